"""`vm:BACKEND` (`vm:pagefs`, `vm:virtiofsd`, `vm:9p`): a real Linux guest and its back-end.

The factory boots one guest (`make vm`'s Debian kernel and busybox initramfs, under
QEMU with TCG) against BACKEND exporting a host directory, and keeps it for every test
case. Host operations are syscalls on that directory; guest requests are syscalls and
MAP_SHARED mmaps made inside the guest by its agent (a PathGuest over AgentSystem), so
every answer comes from the guest's kernel client and the back-end behind it. Each case
gets a fresh subdirectory, created on the host side, as `mount:` does. Where the back-end
can export read-only, the same directory is also mounted read-only (RO-EXPORT).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import tempfile

from pagefs.conformance.target import MAPPINGS, READ_ONLY, Target, TargetFactory
from pagefs.conformance.targets.mount import SYSCALL_VIEW_LIMITS, ViewTarget
from pagefs.conformance.vm.backends import NAMES
from pagefs.conformance.vm.remote import AgentSystem

BACKENDS = tuple(n for n in NAMES if n != "pagefs-dax")  # DAX needs QEMU 11.1: make test-vm
READ_ONLY_BACKENDS = ("pagefs", "9p")


class VmFactory(TargetFactory):
    def __init__(self, backend: str) -> None:
        from pagefs.conformance.vm.stack import RO_TAG, RW_TAG, stack
        self.name = f"vm:{backend}"
        ro = backend in READ_ONLY_BACKENDS
        self.capabilities = frozenset({MAPPINGS} | ({READ_ONLY} if ro else set()))
        self._base = tempfile.mkdtemp(prefix="pagefs-conformance-vm.")
        os.chmod(self._base, 0o755)
        self._cases = itertools.count()
        self._running = contextlib.ExitStack()
        try:
            self.machine = self._running.enter_context(stack(backend, self._base, ro=ro))
        except BaseException:
            self.close()
            raise
        self._system = AgentSystem(self.machine.agent)
        self._rw, self._ro = f"/mnt/{RW_TAG}", f"/mnt/{RO_TAG}" if ro else None

    def why_not(self, capability: str) -> str:
        if capability == READ_ONLY:
            return "QEMU 7.2's virtiofsd has no read-only export option"
        if capability == "peers":
            return "one guest VM (two would double a TCG run's time)"
        if capability == "special":
            return "the guest agent does not carry LINK, MKNOD, xattr, FALLOCATE or SYNCFS"
        return SYSCALL_VIEW_LIMITS.get(capability, capability)

    def start(self, *, read_only: bool = False) -> Target:
        case = f"case{next(self._cases)}"
        hostdir = os.path.join(self._base, case)
        os.mkdir(hostdir, 0o755)  # the spec's export root
        view = self._ro if read_only and self._ro else self._rw
        return ViewTarget(self.name, self.capabilities, hostdir, [f"{view}/{case}"],
                          read_only, system=self._system)

    def close(self) -> None:
        self._running.close()
        shutil.rmtree(self._base, ignore_errors=True)


def parse(spec: str) -> VmFactory:
    """`vm:BACKEND` -> a factory that boots a guest against BACKEND (one-line errors)."""
    backend = spec.partition(":")[2]
    if backend not in BACKENDS:
        raise ValueError(f"usage: vm:BACKEND, BACKEND one of {', '.join(BACKENDS)}")
    return VmFactory(backend)
