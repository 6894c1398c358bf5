"""`mount:HOSTDIR:GUESTDIR[:GUESTDIR2]`: any mounted guest view with its host directory beside it.

Host operations are syscalls on HOSTDIR, guest requests are syscalls and mmap on the
guest view (a bindfs FUSE mount, or a virtiofs/9p mount inside a VM whose host
directory is reachable here). Each test case gets a fresh subdirectory, created on
the host side, so no case sees another's names or the guest's caches of them. A
second guest directory viewing the same host directory (a second mount) makes the
target offer two guests (COH-PEER).
"""

from __future__ import annotations

import itertools
import os
import shutil

from pagefs.conformance.target import (
    CONFINED,
    MAPPINGS,
    OWN_HANDLES,
    PEERS,
    RAW_NAMES,
    READ_ONLY,
    Guest,
    Target,
    TargetFactory,
)
from pagefs.conformance.targets.hostdir import HostDir
from pagefs.conformance.targets.pathguest import PathGuest
from pagefs.conformance.targets.system import LOCAL, System

WINDOW_SIZE = 8 << 20  # four 2 MiB ranges, as the spec's window

# What a guest seen through syscalls cannot show, whatever the mount.
SYSCALL_VIEW_LIMITS = {
    OWN_HANDLES: "through syscalls, handles and nodeids are the harness's descriptors; the "
                 "mount's own FUSE ids are not visible",
    CONFINED: "through syscalls, the guest kernel resolves names and opens special files "
              "itself; the server is never asked",
    RAW_NAMES: "a path walk cannot carry a '/' inside a name",
}


class ViewTarget(Target):
    """A host directory and one or more guest views of it, each guest a PathGuest."""

    def __init__(self, name: str, capabilities: frozenset[str], hostdir: str,
                 guestdirs: list[str], read_only: bool, cleanup: bool = True,
                 system: System = LOCAL) -> None:
        self.name = name
        self.capabilities = capabilities
        self.read_only = read_only
        self.window_size = WINDOW_SIZE if MAPPINGS in capabilities else 0
        self.host = HostDir(hostdir)
        self._hostdir = hostdir
        self._guestdirs = guestdirs
        self._guests: list[PathGuest] = []
        self._cleanup = cleanup
        self._system = system  # whose kernel the guest views are in

    def connect(self) -> Guest:
        # A reconnecting guest takes the next view round the list (views are equivalent).
        guest = PathGuest(self._guestdirs[len(self._guests) % len(self._guestdirs)],
                          self.window_size, self._system)
        self._guests.append(guest)
        return guest

    def close(self) -> None:
        for guest in self._guests:
            guest.close()
        self._guests.clear()
        if self._cleanup:
            shutil.rmtree(self._hostdir, ignore_errors=True)


class MountFactory(TargetFactory):
    """Fresh case directories under HOSTDIR, seen through each guest directory."""

    def __init__(self, hostdir: str, guestdirs: list[str], *, ro_guestdir: str | None = None,
                 name: str | None = None, mappings: bool = True) -> None:
        self.name = name or f"mount:{hostdir}:{':'.join(guestdirs)}"
        self.hostdir, self.guestdirs, self.ro_guestdir = hostdir, guestdirs, ro_guestdir
        caps = {MAPPINGS} if mappings else set()
        if len(guestdirs) > 1:
            caps.add(PEERS)
        if ro_guestdir:
            caps.add(READ_ONLY)
        self.capabilities = frozenset(caps)
        self._cases = itertools.count()
        for d in [hostdir, *guestdirs]:
            if not os.path.isdir(d):
                raise OSError(f"{self.name}: {d} is not a directory")

    def why_not(self, capability: str) -> str:
        return {
            PEERS: "one guest view given (add :GUESTDIR2, a second mount, for COH-PEER)",
            READ_ONLY: "no read-only guest view given",
            MAPPINGS: "the guest view does not support mmap",
        }.get(capability, SYSCALL_VIEW_LIMITS.get(capability, capability))

    def start(self, *, read_only: bool = False) -> Target:
        case = f"pagefs-conformance.{os.getpid()}.{next(self._cases)}"
        hostdir = os.path.join(self.hostdir, case)
        os.mkdir(hostdir, 0o755)  # the spec's export root
        views = [self.ro_guestdir] if read_only and self.ro_guestdir else self.guestdirs
        return ViewTarget(self.name, self.capabilities, hostdir,
                          [os.path.join(v, case) for v in views], read_only)


def parse(spec: str) -> MountFactory:
    """`mount:HOSTDIR:GUESTDIR[:GUESTDIR2...]` -> a factory (one-line errors)."""
    parts = spec.split(":")[1:]
    if len(parts) < 2 or not all(parts):
        raise ValueError("usage: mount:HOSTDIR:GUESTDIR[:GUESTDIR2]")
    return MountFactory(parts[0], parts[1:])
