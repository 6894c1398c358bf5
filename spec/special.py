"""Guest requests beyond files and names: hard links, special files, extended attributes,
space (LINK, MKNOD, SETXATTR, GETXATTR, LISTXATTR, REMOVEXATTR, FALLOCATE, SYNCFS).

Each is a write path but GETXATTR, LISTXATTR and SYNCFS, and in a read-only export every
write path fails (RO-EXPORT): EROFS is always allowed, beside whatever else the request
earns (Linux answers EEXIST before EROFS; pagefs-host answers EROFS before anything but
a stale nodeid or handle). A guest makes no device node (EPERM): one made by an untrusted
guest would be a door to a host device for whoever on the host reaches the export. Only
the `user.` extended attributes are the guest's: `security.`, `trusted.` and `system.`
mean something to the host's privileged software (file capabilities, overlayfs
redirects, ACLs), so a guest can neither change them (EPERM) nor see them (ENODATA).
"""

from __future__ import annotations

from dataclasses import replace

from pagefs.spec.datatypes import (
    FALLOC_KEEP_SIZE,
    FALLOC_PUNCH_HOLE,
    FALLOC_ZERO_RANGE,
    S_IFBLK,
    S_IFCHR,
    S_IFIFO,
    S_IFREG,
    S_IFSOCK,
    XATTR_CREATE,
    XATTR_REPLACE,
    Data,
    Errno,
    FallocMode,
    Fh,
    FileKind,
    FileMode,
    GuestId,
    HandleKind,
    Inode,
    Length,
    Name,
    NodeId,
    Offset,
    Outcome,
    State,
    XattrFlags,
    XattrName,
)
from pagefs.spec.files import _io_handle
from pagefs.spec.guests import handle_errors, held, remember, write_errors
from pagefs.spec.namespace import make_entry
from pagefs.spec.outcomes import lawful, ok, ok_values, refuse  # noqa: F401 (contracts)
from pagefs.spec.rules import is_dot
from pagefs.spec.tree import bump, create_errors, put, with_data

XATTR_NAME_MAX = 255
XATTR_SIZE_MAX = 65536
GUEST_XATTRS = b"user."
_NODE_KINDS = {S_IFREG: FileKind.REG, 0: FileKind.REG, S_IFIFO: FileKind.FIFO,
               S_IFSOCK: FileKind.SOCK}
_FALLOC_MODES = (0, FALLOC_KEEP_SIZE, FALLOC_PUNCH_HOLE | FALLOC_KEEP_SIZE, FALLOC_ZERO_RANGE,
                 FALLOC_ZERO_RANGE | FALLOC_KEEP_SIZE)


def link(state: State, guest: GuestId, nodeid: NodeId, newparent: NodeId,
         newname: Name) -> tuple[Outcome, ...]:
    """LINK gives the inode behind `nodeid` one more name, `newname` in `newparent`, and
    answers with its entry (the same nodeid, one lookup more). Never a directory (EPERM);
    an inode whose last name is gone cannot get one back (ENOENT); the usual NAMESPACE
    errnos for the new name.

    pre: 0 <= guest < len(state.guests)
    post: lawful(state, "LINK", (guest, nodeid, newparent, newname), __return__)
    """
    dir_ino = held(state, guest, newparent)
    if isinstance(dir_ino, frozenset):
        return refuse(state, dir_ino)
    ino = held(state, guest, nodeid)
    errors = set(create_errors(state, dir_ino, newname) | write_errors(state))
    if isinstance(ino, frozenset):  # the new name and the source are checked in any order
        return refuse(state, errors | ino)
    inode = state.inodes[ino]
    if inode.kind is FileKind.DIR:
        errors.add(Errno.EPERM)
    elif inode.nlink <= 0:
        errors.add(Errno.ENOENT)
    if errors:
        return refuse(state, errors)
    parent = state.inodes[dir_ino]
    state = put(state, dir_ino, bump(replace(parent, entries=parent.entries.set(newname, ino))))
    state = put(state, ino, replace(inode, nlink=inode.nlink + 1))
    return ok(*remember(state, guest, ino))


def mknod(state: State, guest: GuestId, parent: NodeId, name: Name,
          mode: FileMode) -> tuple[Outcome, ...]:
    """MKNOD makes a FIFO, a socket or an empty regular file (file type 0 is a regular
    file, as in mknod(2)) and answers with its entry. Character and block devices are
    EPERM; a directory, a symlink or an unknown type is EINVAL (MKDIR and SYMLINK make
    those). A guest kernel never sends "." or "..", and a server that works by path
    cannot express them, so it may refuse them with EINVAL before it looks at the
    parent (Linux's own mknodat answers EEXIST, which the rules below allow).

    pre: 0 <= guest < len(state.guests)
    post: lawful(state, "MKNOD", (guest, parent, name, mode), __return__)
    """
    dir_ino = held(state, guest, parent)
    if isinstance(dir_ino, frozenset):
        return refuse(state, dir_ino | ({Errno.EINVAL} if is_dot(name) else set()))
    file_type = mode & 0o170000
    errors = set(create_errors(state, dir_ino, name) | write_errors(state))
    if file_type in (S_IFCHR, S_IFBLK):
        errors.add(Errno.EPERM)
    elif file_type not in _NODE_KINDS:
        errors.add(Errno.EINVAL)
    if errors:
        return refuse(state, errors)
    return make_entry(state, guest, parent, name,
                      Inode(kind=_NODE_KINDS[file_type], mode=mode & 0o7777))


def xattr_name_errors(name: bytes) -> frozenset[Errno]:
    """An attribute name is 1 to 255 bytes (ERANGE otherwise, as Linux says).

    post: (not __return__) == (0 < len(name) <= XATTR_NAME_MAX)
    """
    return frozenset() if 0 < len(name) <= XATTR_NAME_MAX else frozenset({Errno.ERANGE})


def guest_may_use(name: bytes) -> bool:
    """Only `user.` attributes with a name after the prefix are the guest's.

    post: __return__ == (name.startswith(b"user.") and len(name) > 5)
    """
    return name.startswith(GUEST_XATTRS) and len(name) > len(GUEST_XATTRS)


def _holds_xattrs(kind: FileKind) -> bool:
    """Linux keeps `user.` attributes on regular files and directories only."""
    return kind in (FileKind.REG, FileKind.DIR)


def _change_errors(state: State, ino: int, name: bytes) -> set[Errno]:
    errors = set(xattr_name_errors(name))
    if not guest_may_use(name) or not _holds_xattrs(state.inodes[ino].kind):
        errors.add(Errno.EPERM)
    return errors


def setxattr(state: State, guest: GuestId, nodeid: NodeId, name: XattrName, value: Data,
             flags: XattrFlags) -> tuple[Outcome, ...]:
    """SETXATTR sets a `user.` attribute of a regular file or directory. XATTR_CREATE
    fails on an existing one (EEXIST), XATTR_REPLACE on a missing one (ENODATA); other
    flag bits, or both, are EINVAL; a value over 64 KiB is E2BIG; other namespaces and
    other kinds of file are EPERM.

    pre: 0 <= guest < len(state.guests)
    post: lawful(state, "SETXATTR", (guest, nodeid, name, value, flags), __return__)
    """
    ino = held(state, guest, nodeid)
    if isinstance(ino, frozenset):
        return refuse(state, ino)
    errors = _change_errors(state, ino, name) | write_errors(state)
    if flags & ~(XATTR_CREATE | XATTR_REPLACE) or flags == XATTR_CREATE | XATTR_REPLACE:
        errors.add(Errno.EINVAL)
    if len(value) > XATTR_SIZE_MAX:
        errors.add(Errno.E2BIG)
    inode = state.inodes[ino]
    if not errors and flags == XATTR_CREATE and name in inode.xattrs:
        errors.add(Errno.EEXIST)
    if not errors and flags == XATTR_REPLACE and name not in inode.xattrs:
        errors.add(Errno.ENODATA)
    if errors:
        return refuse(state, errors)
    return ok(put(state, ino, replace(inode, xattrs=inode.xattrs.set(name, value))))


def _fitted(data: bytes, size: int, state: State) -> tuple[Outcome, ...]:
    """Size 0 asks for the length; a smaller buffer than the data is ERANGE."""
    if size == 0:
        return ok(state, len(data))
    if len(data) > size:
        return refuse(state, {Errno.ERANGE})
    return ok(state, data)


def getxattr(state: State, guest: GuestId, nodeid: NodeId, name: XattrName,
             size: Length) -> tuple[Outcome, ...]:
    """GETXATTR answers a `user.` attribute's value, or its length when `size` is 0; a
    buffer too small is ERANGE. An attribute that does not exist, in another namespace
    or on another kind of file, is ENODATA: the guest cannot tell it from a missing one.

    pre: 0 <= guest < len(state.guests)
    post: lawful(state, "GETXATTR", (guest, nodeid, name, size), __return__)
    post: all(o.state == state for o in __return__)
    """
    ino = held(state, guest, nodeid)
    if isinstance(ino, frozenset):
        return refuse(state, ino)
    if xattr_name_errors(name) or size < 0:
        return refuse(state, xattr_name_errors(name) or {Errno.EINVAL})
    value = state.inodes[ino].xattrs.get(name) if guest_may_use(name) else None
    if value is None:
        return refuse(state, {Errno.ENODATA})
    return _fitted(value, size, state)


def listxattr(state: State, guest: GuestId, nodeid: NodeId,
              size: Length) -> tuple[Outcome, ...]:
    """LISTXATTR answers the names of the `user.` attributes, sorted (the order a host
    lists them in carries no meaning), or the length of their NUL-terminated list when
    `size` is 0; a buffer too small for that list is ERANGE.

    pre: 0 <= guest < len(state.guests)
    post: lawful(state, "LISTXATTR", (guest, nodeid, size), __return__)
    post: all(o.state == state for o in __return__)
    """
    ino = held(state, guest, nodeid)
    if isinstance(ino, frozenset):
        return refuse(state, ino)
    if size < 0:
        return refuse(state, {Errno.EINVAL})
    names = tuple(sorted(state.inodes[ino].xattrs))
    length = sum(len(n) + 1 for n in names)
    if size == 0:
        return ok(state, length)
    return refuse(state, {Errno.ERANGE}) if length > size else ok(state, names)


def removexattr(state: State, guest: GuestId, nodeid: NodeId,
                name: XattrName) -> tuple[Outcome, ...]:
    """REMOVEXATTR removes a `user.` attribute (ENODATA when there is none); the other
    namespaces and other kinds of file are EPERM.

    pre: 0 <= guest < len(state.guests)
    post: lawful(state, "REMOVEXATTR", (guest, nodeid, name), __return__)
    """
    ino = held(state, guest, nodeid)
    if isinstance(ino, frozenset):
        return refuse(state, ino)
    errors = _change_errors(state, ino, name) | write_errors(state)
    inode = state.inodes[ino]
    if not errors and name not in inode.xattrs:
        errors.add(Errno.ENODATA)
    if errors:
        return refuse(state, errors)
    return ok(put(state, ino, replace(inode, xattrs=inode.xattrs.remove(name))))


def fallocate(state: State, guest: GuestId, fh: Fh, offset: Offset, length: Length,
              mode: FallocMode) -> tuple[Outcome, ...]:
    """FALLOCATE through a writable file handle: mode 0 reserves space and extends the
    file to cover the range, KEEP_SIZE only reserves, PUNCH_HOLE|KEEP_SIZE makes the
    range inside the file read as zeros, ZERO_RANGE zeroes the range (and extends the
    file unless KEEP_SIZE). Other modes (PUNCH_HOLE alone among them) are EOPNOTSUPP; a
    negative offset or an empty range EINVAL; past the largest size EFBIG. Mappings of
    the file show the zeros at once (COH-READ).

    pre: 0 <= guest < len(state.guests)
    post: lawful(state, "FALLOCATE", (guest, fh, offset, length, mode), __return__)
    """
    unknown = handle_errors(state, guest, fh, HandleKind.FILE)
    if unknown:
        return refuse(state, unknown)
    handle = _io_handle(state, guest, fh, write=True)
    # a handle's access, the mode and the range are checked in any order (Linux checks
    # the mode and range first; pagefs-host the export and the handle)
    errors = set(handle) if isinstance(handle, frozenset) else set()
    if mode not in _FALLOC_MODES:
        errors.add(Errno.EOPNOTSUPP)
    if offset < 0 or length <= 0:
        errors.add(Errno.EINVAL)
    elif offset + length > state.config.max_size:
        errors.add(Errno.EFBIG)
    if errors or isinstance(handle, frozenset):
        return refuse(state, errors)
    inode = state.inodes[handle.ino]
    data, end = inode.data, offset + length
    if mode & (FALLOC_PUNCH_HOLE | FALLOC_ZERO_RANGE):
        inside = min(end, len(data))
        if offset < inside:
            data = data[:offset] + bytes(inside - offset) + data[inside:]
    if not mode & FALLOC_KEEP_SIZE and end > len(data):
        data = data + bytes(end - len(data))
    if data == inode.data:
        return ok(state)
    return ok(put(state, handle.ino, with_data(inode, data)))


def syncfs(state: State, guest: GuestId, nodeid: NodeId) -> tuple[Outcome, ...]:
    """SYNCFS returns once every file of the export is on stable storage (DURABLE). It is
    not a write: a read-only export serves it.

    pre: 0 <= guest < len(state.guests)
    post: lawful(state, "SYNCFS", (guest, nodeid), __return__)
    post: __return__[0].state == state or _clean(__return__[0].state)
    """
    ino = held(state, guest, nodeid)
    if isinstance(ino, frozenset):
        return refuse(state, ino)
    inodes = state.inodes
    for number, inode in state.inodes.items():
        if inode.dirty:
            inodes = inodes.set(number, replace(inode, dirty=False))
    return ok(replace(state, inodes=inodes))


def _clean(state: State) -> bool:
    return not any(inode.dirty for inode in state.inodes.values())
