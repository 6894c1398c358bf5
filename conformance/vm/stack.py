"""A whole stack up: back-end(s) on a host directory, a guest booted against them, mounted.

    with stack("pagefs", hostdir, ro=True) as vm:
        vm.agent.check("ls /mnt/pagefs /mnt/pagefsro")

The writable export is tag `pagefs` at /mnt/pagefs; with `ro`, the same directory is
also exported read-only as `pagefsro` at /mnt/pagefsro (where the back-end can).
Everything is ended when the block is left, in reverse order: guest, then back-ends.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from pagefs.conformance.vm import backends
from pagefs.conformance.vm.image import Image
from pagefs.conformance.vm.machine import SYSTEM_QEMU, Machine, Qemu, boot

RW_TAG, RO_TAG = "pagefs", "pagefsro"


@contextlib.contextmanager
def stack(backend: str, hostdir: str, *, ro: bool = False, qemu: Qemu = SYSTEM_QEMU,
          memory_mib: int = 512, resets_exit: bool = True) -> Iterator[Machine]:
    image = Image.load()
    with contextlib.ExitStack() as started:
        shares = [started.enter_context(backends.start(backend, hostdir, tag=RW_TAG))]
        if ro:
            shares.append(started.enter_context(
                backends.start(backend, hostdir, read_only=True, tag=RO_TAG)))
        vm = started.enter_context(boot(image, shares, qemu=qemu, memory_mib=memory_mib,
                                        resets_exit=resets_exit))
        vm.mount()
        yield vm
