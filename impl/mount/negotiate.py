"""The INIT reply pagefs-mount gives the kernel.

We take what the kernel offers of what a coherent relay needs, and no caching the host
could not see through: no writeback cache (the host would see writes late), no
readdirplus (LOOKUP goes to the back-end each time), no POSIX locks (the kernel keeps
them locally, for this mount). PASSTHROUGH when the kernel offers it and we can back
files with host fds; then the backing files may stack on one more file system.
"""

from __future__ import annotations

from pagefs.impl import protocol as p
from pagefs.impl.machine import PAGE_SIZE
from pagefs.impl.protocol.constants import FUSE_KERNEL_MINOR_VERSION, FUSE_KERNEL_VERSION

WANTED = (
    p.InitFlag.ASYNC_READ | p.InitFlag.BIG_WRITES | p.InitFlag.MAX_PAGES
    | p.InitFlag.PARALLEL_DIROPS | p.InitFlag.AUTO_INVAL_DATA | p.InitFlag.INIT_EXT
    | p.InitFlag.DIRECT_IO_ALLOW_MMAP
)  # fmt: skip
MAX_WRITE = 1 << 20
# A host file may itself sit on one stacked file system (overlayfs), not two.
MAX_STACK_DEPTH = 2


def kernel_offers_passthrough(kernel: p.InitIn) -> bool:
    return bool(kernel.flags & p.InitFlag.PASSTHROUGH)


def init_reply(kernel: p.InitIn, backend_max_write: int, passthrough: bool) -> p.InitOut:
    """Our answer to the kernel's INIT; `passthrough` only when the kernel offered it."""
    flags = kernel.flags & WANTED
    if passthrough:
        flags |= p.InitFlag.PASSTHROUGH
    max_write = max(PAGE_SIZE, min(MAX_WRITE, backend_max_write))
    return p.InitOut(
        FUSE_KERNEL_VERSION, FUSE_KERNEL_MINOR_VERSION, kernel.max_readahead, flags,
        max_background=16, congestion_threshold=12, max_write=max_write, time_gran=1,
        max_pages=max_write // PAGE_SIZE,
        max_stack_depth=MAX_STACK_DEPTH if passthrough else 0,
    )  # fmt: skip
