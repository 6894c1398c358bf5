"""Fault-contained copies between Python buffers and window memory.

Every access the guest driver makes to the DAX window goes through here: a load or
store that faults (SIGBUS on a page the host truncated away, SIGSEGV on a window
range that is not mapped) ends that one copy early instead of ending the process.
The result is the number of bytes copied; fewer than asked means a fault stopped
the copy at that byte (page-exact). See safemem.c for the mechanism.

The handler is installed by the first guarded copy, not at import and not again on
every copy. Faults outside a guarded copy are passed on to the handler that was there
before (Python's faulthandler, or the default). A handler installed over ours after
the first copy takes every fault until `install()` is called again.
"""

from __future__ import annotations

import errno
import mmap
import os

from pagefs.impl.guest._safemem import ffi, lib

# Anything exporting the buffer protocol (collections.abc.Buffer from Python 3.12).
Buffer = bytes | bytearray | memoryview | mmap.mmap


def _check(rc: int, what: str) -> None:
    if rc < 0:
        raise OSError(-rc, f"{what}: {os.strerror(-rc)}")


def install() -> None:
    """Install the process-wide fault handler now, or again on top of one installed
    over it since (which then gets the faults that are not ours)."""
    _check(lib.safemem_install(), "safemem install")


def register_window(base: int, length: int) -> None:
    """Declare [base, base+length) a window: SIGSEGV there, in a guarded copy, is EFAULT."""
    _check(lib.safemem_register_window(base, length), "safemem register window")


def unregister_window(base: int) -> None:
    _check(lib.safemem_unregister_window(base), "safemem unregister window")


def read_into(address: int, buffer: Buffer, length: int | None = None) -> int:
    """Copy `length` bytes (default: len(buffer)) from window memory at `address`
    into the writable `buffer`; return the count copied before any fault."""
    dst = ffi.from_buffer(buffer, require_writable=True)
    if length is None:
        length = len(dst)
    elif not 0 <= length <= len(dst):
        raise OSError(errno.EINVAL, "length outside the buffer")
    return lib.safemem_read(dst, address, length)


def write_from(address: int, data: Buffer) -> int:
    """Copy `data` to window memory at `address`; return the count copied before any fault."""
    src = ffi.from_buffer(data)
    return lib.safemem_write(address, src, len(src))


_PROBE = ffi.new("char[1]")  # a byte loaded only to learn whether the load faults


def loads(address: int) -> bool:
    """Whether one byte of window memory at `address` loads without a fault (READ-BOUND's
    probe: the page exists in the file now). The byte itself is not kept."""
    return lib.safemem_read(_PROBE, address, 1) == 1


def read(address: int, length: int) -> bytes:
    """Read up to `length` bytes from window memory; short if a fault stopped it."""
    buf = bytearray(length)
    n = read_into(address, buf, length)
    del buf[n:]
    return bytes(buf)


def buffer_address(buffer: Buffer) -> int:
    """The address of a buffer's first byte (for an mmap object, its mapping)."""
    return int(ffi.cast("uintptr_t", ffi.from_buffer(buffer)))
