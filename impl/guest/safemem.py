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
from typing import Any

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
    dst = ffi.from_buffer("char[]", buffer, True)  # positional: keywords cost a parse
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
    if length < 2:  # bytes of 0 (and, by some constructors, 1) byte may be shared
        buf = bytearray(length)
        del buf[read_into(address, buf, length):]
        return bytes(buf)
    # One copy, straight into the result: a new bytes object nobody else has seen yet is
    # filled in place, as C code fills PyBytes_FromStringAndSize(NULL, n). A bytearray
    # and a bytes() of it would cost a second copy of every byte.
    data = bytes(length)
    n = lib.safemem_read(ffi.from_buffer(data), address, length)
    return data if n == length else data[:n]


# A reader (fastread.c's struct safemem_reader) of one inode through a window's books.
Reader = Any


def no_reader() -> Reader:
    """A reader with no books: its every read declines (the general path). A new one per
    caller, so that no reader is module state any holder could change for the others."""
    return ffi.new("struct safemem_reader *", {"books": ffi.NULL, "last_end": -1})


def new_reader(books: Any, nodeid: int) -> Reader:
    """A reader of `nodeid` through `books` (a DaxWindow's; None: every read declines). It
    remembers where its last read ended, the sequential hint. The caller keeps the books'
    owner alive as long as the reader."""
    return ffi.new("struct safemem_reader *",
                   {"books": ffi.NULL if books is None else books, "nodeid": nodeid,
                    "last_end": -1})


def pread(reader: Reader, buffer: Buffer, offset: int) -> int:
    """The fast read (fastread.c): fill the writable `buffer` from file offset `offset`
    of the reader's inode if the window's books hold every range it and its READ-BOUND
    probe touch and the probe loads; return the count, or -1 for "take the general
    path" (nothing decided; the buffer may have been written)."""
    dst = ffi.from_buffer("char[]", buffer, True)
    return lib.safemem_pread(reader, dst, len(dst), offset)


def pread_bytes(reader: Reader, size: int, offset: int) -> bytes | None:
    """pread() into a new bytes of `size` (2 or more: see read()); None for the general
    path."""
    data = bytes(size)
    try:
        done = lib.safemem_pread(reader, ffi.from_buffer(data), size, offset)
    except OverflowError:
        return None  # an offset no file reaches: the general path says so
    return data if done == size else None


def buffer_address(buffer: Buffer) -> int:
    """The address of a buffer's first byte (for an mmap object, its mapping)."""
    return int(ffi.cast("uintptr_t", ffi.from_buffer(buffer)))
