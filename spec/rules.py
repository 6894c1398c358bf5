"""Small rules over plain values, each with the contract CrossHair checks.

The operations compose these: what a valid name is, how bytes are read, written and
resized, which page of a file an access touches and whether it lies beyond end of file,
and what a well-formed mapping request is. Keeping them small and free of the state is
what lets CrossHair explore them exhaustively within a budget.
"""

from __future__ import annotations

from pagefs.spec.datatypes import (
    O_ACCMODE,
    O_RDONLY,
    O_RDWR,
    O_WRONLY,
    Access,
    Errno,
)

DOT_NAMES = (b".", b"..")


def name_errors(name: bytes, name_max: int) -> frozenset[Errno]:
    """The errnos a directory entry name earns by its syntax alone: EINVAL for '/' or NUL
    (a name is one component), ENAMETOOLONG past `name_max`, and EINVAL or ENOENT for the
    empty name (Linux says ENOENT for an empty path, servers that check names say EINVAL).

    pre: name_max > 0
    post: (not __return__) == (0 < len(name) <= name_max and not {47, 0} & set(name))
    post: len(name) <= name_max or Errno.ENAMETOOLONG in __return__
    """
    errors: set[Errno] = set()
    if not name:
        errors |= {Errno.EINVAL, Errno.ENOENT}
    if b"/" in name or b"\0" in name:
        errors.add(Errno.EINVAL)
    if len(name) > name_max:
        errors.add(Errno.ENAMETOOLONG)
    return frozenset(errors)


def is_dot(name: bytes) -> bool:
    """'.' and '..' name the directory itself and its parent, never an entry of their own.

    post: __return__ == (name in (b".", b".."))
    """
    return name in DOT_NAMES


def access_of(flags: int) -> Access | None:
    """The access mode that open flags ask for, or None for the invalid O_ACCMODE value 3.

    post: (__return__ is None) == (flags & 3 == 3)
    post: __return__ is None or __return__.can_read == (flags & 3 != 1)
    post: __return__ is None or __return__.can_write == (flags & 3 != 0)
    """
    mode = flags & O_ACCMODE
    if mode == O_RDONLY:
        return Access.READ
    if mode == O_WRONLY:
        return Access.WRITE
    if mode == O_RDWR:
        return Access.READ_WRITE
    return None


def read_bytes(data: bytes, offset: int, length: int) -> bytes:
    """A read returns the bytes from `offset`, at most `length`, and nothing past end of
    file: a read at or beyond the end returns no bytes (not an error).

    pre: offset >= 0 and length >= 0
    post: __return__ == data[offset:offset + length]
    post: len(__return__) == max(0, min(length, len(data) - offset))
    """
    return data[offset:offset + length]


def write_bytes(data: bytes, offset: int, new: bytes) -> bytes:
    """A write replaces bytes from `offset`; writing past the end first fills the gap with
    zeros (a hole reads as zeros), and the file grows to cover what was written.

    pre: offset >= 0
    post: len(__return__) == (max(len(data), offset + len(new)) if new else len(data))
    post: __return__[offset:offset + len(new)] == new
    post: __return__[:min(offset, len(data))] == data[:min(offset, len(data))]
    post: __return__[offset + len(new):] == data[offset + len(new):]
    """
    if not new:
        return data
    padded = data + b"\0" * (offset - len(data)) if offset > len(data) else data
    return padded[:offset] + new + padded[offset + len(new):]


def resize(data: bytes, size: int) -> bytes:
    """Truncation keeps the first `size` bytes; extension appends zeros, so what lies
    beyond the old end of file never reappears.

    pre: size >= 0
    post: len(__return__) == size
    post: __return__[:min(size, len(data))] == data[:min(size, len(data))]
    post: __return__[len(data):] == bytes(max(0, size - len(data)))
    """
    if size <= len(data):
        return data[:size]
    return data + b"\0" * (size - len(data))


def page_start(offset: int, page_size: int) -> int:
    """The file offset where the page holding byte `offset` starts.

    pre: offset >= 0 and page_size > 0
    post: __return__ <= offset < __return__ + page_size
    post: __return__ % page_size == 0
    """
    return offset - offset % page_size


def page_beyond_eof(start: int, size: int) -> bool:
    """A page lies wholly beyond end of file when it starts at or after the file's size;
    then no byte of it is file data and an access to it faults (EOF-FAULT). The last
    partial page is not beyond EOF: its tail reads as zeros.

    pre: start >= 0 and size >= 0
    post: __return__ == (start >= size)
    """
    return start >= size


def tail_length(size: int, page_size: int) -> int:
    """How many bytes of the last page lie past end of file (0 when the size is a whole
    number of pages): the tail that reads as zero.

    pre: size >= 0 and page_size > 0
    post: 0 <= __return__ < page_size
    post: (size + __return__) % page_size == 0
    """
    return -size % page_size


def mapping_request_valid(foffset: int, length: int, moffset: int, page_size: int,
                          range_size: int, window_size: int) -> bool:
    """A SETUPMAPPING or REMOVEMAPPING request is well formed when it covers whole window
    ranges inside the window (moffset and length multiples of the range size, length not
    zero) and the file offset is page-aligned (INIT's map_alignment). Anything else is
    EINVAL: the window is managed in ranges, the host maps whole pages.

    pre: page_size > 0 and range_size > 0 and range_size % page_size == 0
    pre: window_size > 0 and window_size % range_size == 0
    post: not __return__ or (0 <= moffset and moffset + length <= window_size)
    post: not __return__ or (length > 0 and moffset % range_size == 0)
    post: not __return__ or (foffset >= 0 and foffset % page_size == 0)
    """
    return (
        foffset >= 0
        and foffset % page_size == 0
        and length > 0
        and length % range_size == 0
        and moffset >= 0
        and moffset % range_size == 0
        and moffset + length <= window_size
    )


def ranges_of(moffset: int, length: int, range_size: int) -> range:
    """The window range indices that [moffset, moffset + length) covers.

    pre: range_size > 0 and moffset >= 0 and length > 0
    pre: moffset % range_size == 0 and length % range_size == 0
    post: len(__return__) == length // range_size
    post: __return__[0] * range_size == moffset
    """
    first = moffset // range_size
    return range(first, first + length // range_size)


def size_errors(end: int, max_size: int) -> frozenset[Errno]:
    """A file may not grow past the largest size the export supports: EFBIG.

    pre: max_size >= 0
    post: (not __return__) == (end <= max_size)
    """
    return frozenset() if end <= max_size else frozenset({Errno.EFBIG})
