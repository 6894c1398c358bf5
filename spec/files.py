"""Guest requests on open files: handles and their data (HANDLE, ACCESS-MODE, DURABLE).

A handle is opened on an inode, not on a name: it keeps working after the name is
renamed, replaced or unlinked (LIFETIME). A handle's access mode bounds what it can do:
a read-only handle neither WRITEs nor sets up a writable mapping (ACCESS-MODE). READ and
WRITE go to the host's current bytes, the same bytes mappings show (COH-READ).
"""

from __future__ import annotations

from dataclasses import replace

from pagefs.spec.datatypes import (
    O_EXCL,
    O_TRUNC,
    Created,
    Data,
    Errno,
    Fh,
    FileKind,
    GuestId,
    Handle,
    HandleKind,
    Inode,
    Length,
    Mode,
    Mtime,
    Name,
    NodeId,
    Offset,
    OpenFlags,
    Outcome,
    State,
    TimeNs,
)
from pagefs.spec.guests import (
    BAD_HANDLE,
    access_errors,
    caller,
    close_handle,
    find_handle,
    handle_errors,
    held,
    made,
    open_handle,
    owner_errors,
    remember,
    write_errors,
    written_by,
)
from pagefs.spec.outcomes import either, lawful, ok, ok_values, refuse  # noqa: F401 (contracts)
from pagefs.spec.rules import (
    R_OK,
    W_OK,
    X_OK,
    access_of,
    chmod_mode,
    is_dot,
    read_bytes,
    resize,
    size_errors,
)
from pagefs.spec.tree import (
    NO_ERRORS,
    add_entry,
    attr_of,
    child,
    create_errors,
    put,
    with_data,
    write_data,
)


def _open_errors(state: State, guest: int, ino: int, flags: int) -> frozenset[Errno]:
    """Opening an inode: EINVAL for O_ACCMODE 3, EROFS for write access or O_TRUNC in a
    read-only export, EISDIR for write access to a directory, ELOOP for a symlink (the
    host never follows one: CONFINE), and ENXIO (or EACCES, EPERM) for a FIFO or a socket,
    which the host never opens for a guest, as that could block it (CONFINE); EACCES when
    the caller's permission bits lack the access asked (O_TRUNC asks write: OWNERSHIP)."""
    access = access_of(flags)
    if access is None:
        return frozenset({Errno.EINVAL})
    kind = state.inodes[ino].kind
    if kind is FileKind.LNK:
        return frozenset({Errno.ELOOP})
    if kind in (FileKind.FIFO, FileKind.SOCK):
        return frozenset({Errno.ENXIO, Errno.EACCES, Errno.EPERM})
    errors: set[Errno] = set()
    if access.can_write or flags & O_TRUNC:
        errors |= write_errors(state)
        if kind is FileKind.DIR:
            errors.add(Errno.EISDIR)
    if not errors:
        want = (R_OK if access.can_read else 0) | (
            W_OK if access.can_write or flags & O_TRUNC else 0)
        errors |= access_errors(state, guest, ino, want)
    return frozenset(errors)


def _open_file(state: State, guest: int, ino: int, flags: int) -> tuple[State, int]:
    """Open a regular file (truncating it with O_TRUNC) and hand out the next handle."""
    access = access_of(flags)
    assert access is not None
    inode = state.inodes[ino]
    if flags & O_TRUNC and inode.kind is FileKind.REG:
        state = written_by(put(state, ino, with_data(inode, b"")), guest, ino)
    return open_handle(state, guest, Handle(ino, access, HandleKind.FILE))


def open_(state: State, guest: GuestId, nodeid: NodeId, flags: OpenFlags) -> tuple[Outcome, ...]:
    """OPEN opens a handle on the inode with the access mode in `flags` (O_TRUNC empties
    the file). Directories are opened with OPENDIR; a server may still accept a
    read-only OPEN of one (then READ on it is EISDIR) or refuse it with EISDIR.

    pre: 0 <= guest < len(state.guests)
    post: lawful(state, "OPEN", (guest, nodeid, flags), __return__)
    """
    ino = held(state, guest, nodeid)
    if isinstance(ino, frozenset):
        return refuse(state, ino)
    errors = _open_errors(state, guest, ino, flags)
    if errors:
        return refuse(state, errors)
    opened = ok(*_open_file(state, guest, ino, flags))
    if state.inodes[ino].kind is FileKind.DIR:
        return either(opened, refuse(state, {Errno.EISDIR}))
    return opened


def create(state: State, guest: GuestId, parent: NodeId, name: Name, flags: OpenFlags,
           mode: Mode) -> tuple[Outcome, ...]:
    """CREATE makes a regular file with permission bits `mode` and opens it, in one step.
    When the name exists, O_EXCL makes it EEXIST; otherwise the existing inode is opened
    as OPEN would (a directory there is EISDIR). In a read-only export a server may also
    refuse any CREATE with EROFS (RO-EXPORT lists CREATE as a write path), where Linux's
    open(O_CREAT) of an existing file on a read-only mount opens it.

    pre: 0 <= guest < len(state.guests)
    post: lawful(state, "CREATE", (guest, parent, name, flags, mode), __return__)
    """
    dir_ino = held(state, guest, parent)
    if isinstance(dir_ino, frozenset):
        return refuse(state, dir_ino)
    if is_dot(name):  # open(".", O_CREAT) is EISDIR in Linux
        return refuse(state, {Errno.EISDIR, Errno.EEXIST, Errno.EINVAL})
    errors = create_errors(state, dir_ino, name) - {Errno.EEXIST}
    if not errors and access_of(flags) is None:
        errors = frozenset({Errno.EINVAL})
    if not errors:  # the name is looked up in the directory: its x bit (OWNERSHIP)
        errors = access_errors(state, guest, dir_ino, X_OK)
    existing = None if errors else child(state, dir_ino, name)
    if existing is None:
        errors |= write_errors(state)
        if not errors:
            errors = access_errors(state, guest, dir_ino, W_OK | X_OK)
        if errors:
            return refuse(state, errors)
        outcomes: tuple[Outcome, ...] = ()
        for new in made(state, guest, dir_ino, Inode(kind=FileKind.REG, mode=mode & 0o7777)):
            after, ino = add_entry(state, dir_ino, name, new)
            outcomes = either(outcomes, _created(after, guest, ino, flags))
        return outcomes
    read_only_refusal = refuse(state, write_errors(state))  # empty unless read-only
    if flags & O_EXCL:
        return either(refuse(state, {Errno.EEXIST}), read_only_refusal)
    errors = _open_errors(state, guest, existing, flags)
    if state.inodes[existing].kind is FileKind.DIR:
        errors |= {Errno.EISDIR}
    if errors:
        return either(refuse(state, errors), read_only_refusal)
    return either(_created(state, guest, existing, flags), read_only_refusal)


def _created(state: State, guest: int, ino: int, flags: int) -> tuple[Outcome, ...]:
    """CREATE's success: `ino` opened with `flags` and remembered by the guest."""
    state, fh = _open_file(state, guest, ino, flags)
    state, entry = remember(state, guest, ino)
    return ok(state, Created(entry, fh))


def release(state: State, guest: GuestId, fh: Fh) -> tuple[Outcome, ...]:
    """RELEASE ends a file handle; a second RELEASE, or any later use, is EBADF (HANDLE).
    Mappings made through it stay (LIFETIME), and the handle's number is never reused.

    pre: 0 <= guest < len(state.guests)
    post: lawful(state, "RELEASE", (guest, fh), __return__)
    post: all(o.state.guests[guest].window == state.guests[guest].window for o in __return__)
    """
    errors = handle_errors(state, guest, fh, HandleKind.FILE)
    if errors:
        return refuse(state, errors)
    return ok(close_handle(state, guest, fh))


def _io_handle(state: State, guest: int, fh: int, write: bool) -> Handle | frozenset[Errno]:
    """The file handle for READ or WRITE: EBADF when unknown or opened without that
    access (ACCESS-MODE; a read-only export has only read-only handles, so EROFS there
    too), EISDIR when it was opened on a directory."""
    errors = handle_errors(state, guest, fh, HandleKind.FILE)
    if errors:
        return errors
    handle = find_handle(state, guest, fh, HandleKind.FILE)
    assert handle is not None
    if write and not handle.access.can_write:
        return BAD_HANDLE | write_errors(state)
    if not write and not handle.access.can_read:
        return BAD_HANDLE
    if state.inodes[handle.ino].kind is FileKind.DIR:
        return frozenset({Errno.EISDIR})
    return handle


def read(state: State, guest: GuestId, fh: Fh, offset: Offset,
         length: Length) -> tuple[Outcome, ...]:
    """READ returns the host's current bytes of the file from `offset`, up to `length`
    and never past end of file (COH-READ): a read at or past the end returns b"".

    pre: 0 <= guest < len(state.guests)
    post: lawful(state, "READ", (guest, fh, offset, length), __return__)
    post: all(o.state == state for o in __return__)
    post: all(len(v) <= length for v in ok_values(__return__))
    """
    handle = _io_handle(state, guest, fh, write=False)
    if isinstance(handle, frozenset):
        return refuse(state, handle)
    if offset < 0 or length < 0:
        return refuse(state, {Errno.EINVAL})
    return ok(state, read_bytes(state.inodes[handle.ino].data, offset, length))


def write(state: State, guest: GuestId, fh: Fh, offset: Offset, data: Data) -> tuple[Outcome, ...]:
    """WRITE puts `data` at `offset` in the host's file, filling any gap with zeros, and
    answers with the count written (all of it). Host readers and every mapping see it at
    once (COH-READ, COH-PEER); it is durable only after FSYNC (DURABLE).

    pre: 0 <= guest < len(state.guests)
    post: lawful(state, "WRITE", (guest, fh, offset, data), __return__)
    post: all(v == len(data) for v in ok_values(__return__))
    """
    handle = _io_handle(state, guest, fh, write=True)
    if isinstance(handle, frozenset):
        return refuse(state, handle)
    written = write_data(state, handle.ino, offset, data)
    if isinstance(written, frozenset):
        return refuse(state, written)
    if data:  # a write by a user clears set-id (OWNERSHIP); an empty one writes nothing
        written = written_by(written, guest, handle.ino)
    return ok(written, len(data))


def flush(state: State, guest: GuestId, fh: Fh) -> tuple[Outcome, ...]:
    """FLUSH is sent on every close(2) of a guest file descriptor; it changes nothing the
    spec observes, and needs a live file handle (EBADF otherwise).

    pre: 0 <= guest < len(state.guests)
    post: lawful(state, "FLUSH", (guest, fh), __return__)
    post: all(o.state == state for o in __return__)
    """
    errors = handle_errors(state, guest, fh, HandleKind.FILE)
    if errors:
        return refuse(state, errors)
    return ok(state)


def fsync(state: State, guest: GuestId, fh: Fh, datasync: bool) -> tuple[Outcome, ...]:
    """FSYNC returns only once the file's data, however written (WRITE, store through a
    mapping, or the host), is on the host's stable storage (DURABLE). It works through a
    read-only handle too, as fsync(2) does.

    pre: 0 <= guest < len(state.guests)
    post: lawful(state, "FSYNC", (guest, fh, datasync), __return__)
    """
    errors = handle_errors(state, guest, fh, HandleKind.FILE)
    if errors:
        return refuse(state, errors)
    handle = find_handle(state, guest, fh, HandleKind.FILE)
    assert handle is not None
    inode = state.inodes[handle.ino]
    return ok(put(state, handle.ino, replace(inode, dirty=False)))


def setattr_(state: State, guest: GuestId, nodeid: NodeId, size: Length | None,
             mode: Mode | None, mtime_ns: TimeNs | None) -> tuple[Outcome, ...]:
    """SETATTR changes what is given: `size` truncates or extends a regular file with
    zeros (EISDIR for a directory, EINVAL for other kinds or a negative size), `mode`
    sets permission bits, `mtime_ns` sets the modification time exactly. It answers with
    the new attributes; EROFS in a read-only export when it would change anything. A
    symlink's mode or time may be refused with EOPNOTSUPP (the host never follows it,
    and Linux has no lchmod).

    pre: 0 <= guest < len(state.guests)
    post: lawful(state, "SETATTR", (guest, nodeid, size, mode, mtime_ns), __return__)
    """
    ino = held(state, guest, nodeid)
    if isinstance(ino, frozenset):
        return refuse(state, ino)
    inode = state.inodes[ino]
    errors = NO_ERRORS
    if size is not None:
        if inode.kind is FileKind.DIR:
            errors |= {Errno.EISDIR}
        elif inode.kind is not FileKind.REG or size < 0:
            errors |= {Errno.EINVAL}
        else:
            errors |= size_errors(size, state.config.max_size)
    if size is not None or mode is not None or mtime_ns is not None:
        errors |= write_errors(state)
    if not errors:  # truncation needs write permission; mode and time, ownership
        if size is not None:
            errors |= access_errors(state, guest, ino, W_OK)
        if mode is not None or mtime_ns is not None:
            errors |= owner_errors(state, guest, ino)
    if errors:
        return refuse(state, errors)
    if inode.kind is FileKind.LNK and (mode is not None or mtime_ns is not None):
        return either(_set_attrs(state, guest, ino, size, mode, mtime_ns),
                      refuse(state, {Errno.EOPNOTSUPP}))
    return _set_attrs(state, guest, ino, size, mode, mtime_ns)


def _set_attrs(state: State, guest: int, ino: int, size: int | None, mode: int | None,
               mtime_ns: int | None) -> tuple[Outcome, ...]:
    inode = state.inodes[ino]
    if size is not None:
        state = written_by(put(state, ino, with_data(inode, resize(inode.data, size))),
                           guest, ino)
        inode = state.inodes[ino]
    if mode is not None:
        who = caller(state, guest)
        inode = replace(inode, mode=chmod_mode(who.uid, who.gid, inode.gid, mode & 0o7777))
    if mtime_ns is not None:
        inode = replace(inode, mtime=Mtime(inode.mtime.version + 1, mtime_ns))
    state = put(state, ino, inode)
    return ok(state, attr_of(state, ino))
