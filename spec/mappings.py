"""Guest requests on the DAX window: SETUPMAPPING and REMOVEMAPPING.

A guest's window is a row of equal ranges (2 MiB by default), each free or mapped to
(inode, file offset, writable). A mapping names the inode, not the handle it was made
through: it outlives RELEASE (LIFETIME) and keeps the inode alive after unlink. It maps
the host's own pages, so there is one copy whatever the number of guests (SINGLE-COPY).
"""

from __future__ import annotations

from dataclasses import replace

from pagefs.spec.datatypes import (
    OFF_MAX,
    Errno,
    Fh,
    FileKind,
    GuestId,
    HandleKind,
    Length,
    MappedRange,
    Offset,
    Outcome,
    State,
    WindowOffset,
)
from pagefs.spec.guests import find_handle, handle_errors, session_errors, with_guest
from pagefs.spec.outcomes import either, lawful, ok, refuse  # noqa: F401 (contracts)
from pagefs.spec.rules import mapping_request_valid, ranges_of


def _geometry_valid(state: State, foffset: int, length: int, moffset: int) -> bool:
    config = state.config
    return mapping_request_valid(foffset, length, moffset, config.page_size,
                                 config.range_size, config.window_size)


def setupmapping(state: State, guest: GuestId, fh: Fh, foffset: Offset, length: Length,
                 writable: bool, moffset: WindowOffset) -> tuple[Outcome, ...]:
    """SETUPMAPPING maps `length` bytes of the handle's file from `foffset` at window
    offset `moffset`, replacing whatever those ranges mapped. Any mapping needs a handle
    with read access, a writable one also write access (EACCES: ACCESS-MODE, as mmap(2)
    has it) and a writable export (EROFS: RO-EXPORT); misaligned or out-of-window
    requests are EINVAL, past the largest file offset EOVERFLOW, and only regular files
    map (ENODEV, or EINVAL). Mapping beyond end of file is allowed: access there faults
    (EOF-FAULT).

    pre: 0 <= guest < len(state.guests)
    post: lawful(state, "SETUPMAPPING", (guest,fh,foffset,length,writable,moffset), __return__)
    post: all(len(o.state.guests[guest].window) == state.config.window_ranges for o in __return__)
    """
    refused = handle_errors(state, guest, fh, HandleKind.FILE)
    if refused:
        return refuse(state, refused)
    handle = find_handle(state, guest, fh, HandleKind.FILE)
    assert handle is not None
    errors: set[Errno] = set()
    if not _geometry_valid(state, foffset, length, moffset):
        errors.add(Errno.EINVAL)
    elif foffset + length > OFF_MAX:
        errors |= {Errno.EOVERFLOW, Errno.EINVAL}
    if state.inodes[handle.ino].kind is not FileKind.REG:
        errors |= {Errno.ENODEV, Errno.EINVAL}
    if not handle.access.can_read or (writable and not handle.access.can_write):
        errors.add(Errno.EACCES)
    if writable and state.config.read_only:
        errors.add(Errno.EROFS)
    if errors:
        return refuse(state, errors)
    session = state.guests[guest]
    window = list(session.window)
    range_size = state.config.range_size
    for i, index in enumerate(ranges_of(moffset, length, range_size)):
        window[index] = MappedRange(handle.ino, foffset + i * range_size, writable)
    return ok(with_guest(state, guest, replace(session, window=tuple(window))))


def removemapping(state: State, guest: GuestId, moffset: WindowOffset,
                  length: Length) -> tuple[Outcome, ...]:
    """REMOVEMAPPING frees whole window ranges (EINVAL when misaligned or outside the
    window). Freeing a range that is already free may succeed or be EINVAL: servers
    differ, and Linux never asks. Once no handle,
    nodeid or mapping holds an unlinked file, it is gone (LIFETIME).

    pre: 0 <= guest < len(state.guests)
    post: lawful(state, "REMOVEMAPPING", (guest, moffset, length), __return__)
    """
    errors = session_errors(state, guest)
    if errors:
        return refuse(state, errors)
    if not _geometry_valid(state, 0, length, moffset):
        return refuse(state, {Errno.EINVAL})
    session = state.guests[guest]
    window = list(session.window)
    indices = ranges_of(moffset, length, state.config.range_size)
    for index in indices:
        window[index] = None
    freed = ok(with_guest(state, guest, replace(session, window=tuple(window))))
    if all(session.window[index] is not None for index in indices):
        return freed
    return either(freed, refuse(state, {Errno.EINVAL}))
