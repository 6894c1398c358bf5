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


def read_probe(end: int, page_size: int) -> int:
    """READ-BOUND, where to look: a guest reading file bytes [offset, end) through its
    window need not ask the size (GETATTR) to know that they are all file data. It loads
    one byte at the first page boundary at or after `end` (the probe) before it copies:
    the host's kernel answers that load, at that moment, from the file's size (a page
    wholly beyond end of file faults: EOF-FAULT), so a change by any host process is seen
    as at once as by GETATTR (COH-META). Only a probe that faults, or that falls outside
    the ranges the guest holds, costs the round trip.

    pre: end > 0 and page_size > 0
    post: __return__ % page_size == 0
    post: end <= __return__ < end + page_size
    """
    return -(-end // page_size) * page_size


def probe_bounds_read(probe: int, end: int, size: int) -> bool:
    """READ-BOUND, what it proves: a probe at `probe` (at or after the read's `end`) that
    does not fault means the file's size is past the probe, so the whole read lies before
    end of file: the read returns every byte it asked for, as READ at that moment would.
    A probe at the page that holds the read's last byte would not do: that page loads
    whenever the file merely reaches into it, and its tail past end of file reads as
    zeros that are no file data.

    pre: end >= 0 and probe >= end and size >= 0
    post: not __return__ or size >= end
    post: __return__ == (not page_beyond_eof(probe, size))
    """
    return not page_beyond_eof(probe, size)


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


# --- ownership and set-id (OWNERSHIP): what a request's caller changes ---
# A request acts as the uid and gid its FUSE header names (the caller), as virtiofsd and
# pagefs-host do by switching fsuid/fsgid: the host kernel then checks permissions, owns
# what is made, and clears set-id bits, exactly as for a local process of that user with
# no supplementary groups. uid 0 is root (CAP_DAC_OVERRIDE, CAP_FOWNER, CAP_FSETID).

S_ISUID, S_ISGID, S_ISVTX, S_IXGRP = 0o4000, 0o2000, 0o1000, 0o010
R_OK, W_OK, X_OK = 4, 2, 1
ROOT_UID = 0


def permitted(uid: int, gid: int, owner: int, group: int, mode: int, want: int) -> bool:
    """Whether a caller (uid, gid) may read (4), write (2) or search (1) an inode: the
    owner's bits if it owns it, else the group's if it is of its group, else the others';
    root may do anything (the spec asks search only of directories).

    pre: 0 < want <= 7
    post: uid != 0 or __return__
    post: uid == 0 or uid != owner or __return__ == (want & (mode >> 6) == want)
    post: uid == 0 or uid == owner or gid != group or __return__ == (want & (mode >> 3) == want)
    """
    if uid == ROOT_UID:
        return True
    shift = 6 if uid == owner else 3 if gid == group else 0
    return want & (mode >> shift) == want


def new_owner(uid: int, gid: int, parent_mode: int, parent_group: int) -> tuple[int, int]:
    """Whoever makes an inode owns it; its group is the directory's when the directory is
    set-gid (so a shared directory's files stay in its group), else the caller's.

    post: __return__[0] == uid
    post: __return__[1] == (parent_group if parent_mode & 0o2000 else gid)
    """
    return uid, parent_group if parent_mode & S_ISGID else gid


def new_modes(uid: int, gid: int, mode: int, umask: int, directory: bool,
              parent_mode: int, parent_group: int) -> frozenset[int]:
    """The permission bits of a new inode: the requested ones less the umask (a
    directory's request carries no set-uid or set-gid: mkdir(2) ignores them). A
    directory made in a set-gid directory is set-gid itself, so the group keeps being
    inherited. A file asked set-gid and group-executable in a set-gid directory whose
    group the caller is not in (and the caller not root) loses set-gid: no user makes a
    set-gid program of a group that is not theirs. Linux asks "group-executable" before
    the umask (6.x) or after it (older kernels, and a server applying the umask itself):
    both are allowed.

    pre: 0 <= mode <= 0o7777 and 0 <= umask <= 0o777
    post: all(m & ~0o7777 == 0 and not m & umask for m in __return__)
    post: not directory or all(bool(m & 0o2000) == bool(parent_mode & 0o2000) for m in __return__)
    post: not directory or all(not m & 0o4000 for m in __return__)
    post: 1 <= len(__return__) <= 2
    """
    if directory:
        inherited = S_ISGID if parent_mode & S_ISGID else 0
        return frozenset({mode & 0o1777 & ~umask | inherited})
    outcomes = set()
    for asked in (mode, mode & ~umask):  # group-executable before or after the umask
        strip = (asked & (S_ISGID | S_IXGRP) == S_ISGID | S_IXGRP and parent_mode & S_ISGID
                 and uid != ROOT_UID and gid != parent_group)
        outcomes.add(mode & ~umask & ~(S_ISGID if strip else 0))
    return frozenset(outcomes)


def killed_by_write(uid: int, gid: int, group: int, mode: int) -> int:
    """A write or truncation of a file by anyone but root clears set-uid, and set-gid
    where it means set-gid (group-executable) or where the caller is not of the file's
    group (Linux 6's setattr_should_drop_sgid): a program changed by a user must not
    keep running as its owner or group. Root keeps them.

    post: uid == 0 or not __return__ & 0o4000
    post: uid == 0 or not (__return__ & 0o2000 and (__return__ & 0o010 or gid != group))
    post: uid != 0 or __return__ == mode
    post: __return__ & 0o1777 == mode & 0o1777
    """
    if uid == ROOT_UID:
        return mode
    kill = S_ISUID | (S_ISGID if mode & S_IXGRP or gid != group else 0)
    return mode & ~kill


def chmod_mode(uid: int, gid: int, group: int, mode: int) -> int:
    """The bits a chmod by the owner sets: set-gid is dropped when the owner is not in
    the file's group (and not root), as Linux does, so no user hands a group that is not
    theirs a set-gid program. (Only the owner or root may chmod at all: EPERM.)

    post: __return__ & ~0o2000 == mode & ~0o2000
    post: uid == 0 or gid == group or not __return__ & 0o2000
    """
    if uid != ROOT_UID and gid != group:
        return mode & ~S_ISGID
    return mode
