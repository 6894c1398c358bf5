"""Guest requests on names and nodeids: the namespace (NAMESPACE, NODEID, CONFINE).

A guest names things by nodeid, which it gets from LOOKUP (or CREATE, MKDIR, SYMLINK) and
gives back with FORGET. A nodeid keeps meaning the inode it was handed out for, even when
the host renames or unlinks that inode's name; once forgotten it is stale for good.
Names are single components; nothing resolves outside the export and the host never
follows a symlink on a guest's behalf.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from pagefs.spec.datatypes import (
    RENAME_EXCHANGE,
    ROOT_NODEID,
    Access,
    DirEntry,
    Errno,
    Fh,
    FileKind,
    GuestId,
    Handle,
    HandleKind,
    Inode,
    Mode,
    Name,
    Node,
    NodeId,
    Outcome,
    RenameFlags,
    State,
    StatFs,
    Target,
)
from pagefs.spec.guests import (
    access_errors,
    close_handle,
    find_handle,
    handle_errors,
    held,
    made,
    node_errors,
    open_handle,
    remember,
    session_errors,
    with_guest,
    write_errors,
)
from pagefs.spec.outcomes import either, lawful, ok, refuse  # noqa: F401 (contracts)
from pagefs.spec.rules import W_OK, X_OK, is_dot, name_errors
from pagefs.spec.tree import (
    add_entry,
    attr_of,
    child,
    create_errors,
    dir_errors,
    exchange_errors,
    is_dir,
    move_entry,
    remove_entry,
    rename_errors,
    rmdir_errors,
    swap_entries,
    unlink_errors,
)


def lookup(state: State, guest: GuestId, parent: NodeId, name: Name) -> tuple[Outcome, ...]:
    """LOOKUP finds `name` in directory `parent` and hands the guest a nodeid for it (the
    one it holds for that inode, counted once more). '.' and '..' are answered with the
    directory or its parent, never past the export root (CONFINE), or refused with EINVAL
    by servers that accept only real names. Such a server refuses them before it looks
    at the directory, so EINVAL is allowed for them in a directory the host removed too
    (where a server that looks names up answers ENOENT; Linux's own walk still finds
    '.' and '..' there).

    pre: 0 <= guest < len(state.guests)
    post: lawful(state, "LOOKUP", (guest, parent, name), __return__)
    """
    dir_ino = held(state, guest, parent)
    if isinstance(dir_ino, frozenset):
        return refuse(state, dir_ino)
    errors = dir_errors(state, dir_ino) | name_errors(name, state.config.name_max)
    if not errors:  # searching a directory takes its x bit (OWNERSHIP)
        errors = access_errors(state, guest, dir_ino, X_OK)
    if errors:
        return refuse(state, errors | ({Errno.EINVAL} if is_dot(name) else set()))
    if name in (b".", b".."):
        target = dir_ino if name == b"." else state.inodes[dir_ino].parent
        return either(ok(*remember(state, guest, target)), refuse(state, {Errno.EINVAL}))
    found = child(state, dir_ino, name)
    if found is None:
        return refuse(state, {Errno.ENOENT})
    return ok(*remember(state, guest, found))


def forget(state: State, guest: GuestId, nodeid: NodeId, nlookup: int) -> tuple[Outcome, ...]:
    """FORGET gives back `nlookup` lookups of a nodeid; at zero the guest no longer holds
    it and it is stale from then on (NODEID). FORGET has no reply, so it never fails:
    an unknown nodeid or too large a count is ignored or clamped, never a crash. The root
    is never forgotten.

    pre: 0 <= guest < len(state.guests)
    post: lawful(state, "FORGET", (guest, nodeid, nlookup), __return__)
    post: all(ROOT_NODEID in o.state.guests[guest].nodes for o in __return__)
    """
    session = state.guests[guest]
    node = session.nodes.get(nodeid)
    if node is None or nodeid == ROOT_NODEID or nlookup <= 0:
        return ok(state)
    left = node.nlookup - nlookup
    nodes = (session.nodes.set(nodeid, Node(node.ino, left)) if left > 0
             else session.nodes.remove(nodeid))
    return ok(with_guest(state, guest, replace(session, nodes=nodes)))


def getattr_(state: State, guest: GuestId, nodeid: NodeId) -> tuple[Outcome, ...]:
    """GETATTR reports the inode's attributes as they are now on the host: its size and
    mtime follow every host change at once (COH-META). An unlinked inode the guest still
    holds answers too (link count 0).

    pre: 0 <= guest < len(state.guests)
    post: lawful(state, "GETATTR", (guest, nodeid), __return__)
    post: all(o.state == state for o in __return__)
    """
    ino = held(state, guest, nodeid)
    if isinstance(ino, frozenset):
        return refuse(state, ino)
    return ok(state, attr_of(state, ino))


def readlink(state: State, guest: GuestId, nodeid: NodeId) -> tuple[Outcome, ...]:
    """READLINK returns a symlink's target text as stored; the host never resolves it
    (CONFINE). Anything but a symlink is EINVAL.

    pre: 0 <= guest < len(state.guests)
    post: lawful(state, "READLINK", (guest, nodeid), __return__)
    post: all(o.state == state for o in __return__)
    """
    ino = held(state, guest, nodeid)
    if isinstance(ino, frozenset):
        return refuse(state, ino)
    inode = state.inodes[ino]
    if inode.kind is not FileKind.LNK:
        return refuse(state, {Errno.EINVAL})
    return ok(state, inode.data)


def make_entry(state: State, guest: GuestId, parent: NodeId, name: Name,
          inode: Inode) -> tuple[Outcome, ...]:
    """Shared by MKDIR and SYMLINK (and MKNOD): make a new name, reply with its entry; the
    caller needs write and search on the directory, and owns what it made (OWNERSHIP)."""
    dir_ino = held(state, guest, parent)
    if isinstance(dir_ino, frozenset):
        return refuse(state, dir_ino)
    errors = create_errors(state, dir_ino, name) | write_errors(state)
    if not errors:
        errors = access_errors(state, guest, dir_ino, W_OK | X_OK)
    if errors:
        return refuse(state, errors)
    outcomes: tuple[Outcome, ...] = ()
    for new in made(state, guest, dir_ino, inode):
        after, ino = add_entry(state, dir_ino, name, new)
        outcomes = either(outcomes, ok(*remember(after, guest, ino)))
    return outcomes


def mkdir(state: State, guest: GuestId, parent: NodeId, name: Name,
          mode: Mode) -> tuple[Outcome, ...]:
    """MKDIR makes an empty directory with permission bits `mode` (NAMESPACE errnos; EROFS
    in a read-only export) and hands the guest its nodeid.

    pre: 0 <= guest < len(state.guests)
    post: lawful(state, "MKDIR", (guest, parent, name, mode), __return__)
    """
    return make_entry(state, guest, parent, name, Inode(kind=FileKind.DIR, mode=mode & 0o7777))


def symlink(state: State, guest: GuestId, parent: NodeId, name: Name,
            target: Target) -> tuple[Outcome, ...]:
    """SYMLINK stores `target` as text under a new name; it may point anywhere, since the
    host never follows it (CONFINE). An empty target is ENOENT, as in Linux; a NUL in it
    is EINVAL (the wire carries it NUL-terminated).

    pre: 0 <= guest < len(state.guests)
    post: lawful(state, "SYMLINK", (guest, parent, name, target), __return__)
    """
    if not node_errors(state, guest, parent):
        if not target:
            return refuse(state, {Errno.ENOENT})
        if bytes(1) in target:
            return refuse(state, {Errno.EINVAL})
    return make_entry(state, guest, parent, name, Inode(kind=FileKind.LNK, mode=0o777,
                                                    data=target))


def _remove(state: State, guest: int, parent: int, name: bytes,
            rule: Callable[[State, int, bytes], frozenset[Errno]]) -> tuple[Outcome, ...]:
    """Shared by UNLINK and RMDIR: remove a name if `rule` finds nothing against it."""
    dir_ino = held(state, guest, parent)
    if isinstance(dir_ino, frozenset):
        return refuse(state, dir_ino)
    errors = rule(state, dir_ino, name) | write_errors(state)
    if errors:
        return refuse(state, errors)
    return ok(remove_entry(state, dir_ino, name))


def unlink(state: State, guest: GuestId, parent: NodeId, name: Name) -> tuple[Outcome, ...]:
    """UNLINK removes a non-directory name. The inode lives on while any guest holds it
    open, mapped or by nodeid (LIFETIME).

    pre: 0 <= guest < len(state.guests)
    post: lawful(state, "UNLINK", (guest, parent, name), __return__)
    """
    return _remove(state, guest, parent, name, unlink_errors)


def rmdir(state: State, guest: GuestId, parent: NodeId, name: Name) -> tuple[Outcome, ...]:
    """RMDIR removes an empty directory (ENOTEMPTY otherwise).

    pre: 0 <= guest < len(state.guests)
    post: lawful(state, "RMDIR", (guest, parent, name), __return__)
    """
    return _remove(state, guest, parent, name, rmdir_errors)


def rename(state: State, guest: GuestId, parent: NodeId, name: Name, newparent: NodeId,
           newname: Name, flags: RenameFlags) -> tuple[Outcome, ...]:
    """RENAME (FUSE opcode 12; with flags it travels as RENAME2, opcode 45) moves a
    name, replacing what `newname` named (unless RENAME_NOREPLACE). The replaced inode
    stays alive for guests that hold it open or mapped (LIFETIME), and every nodeid and
    handle keeps meaning the inode it meant (NODEID). RENAME_EXCHANGE swaps two names;
    servers without it answer EINVAL.

    pre: 0 <= guest < len(state.guests)
    post: lawful(state, "RENAME", (guest,parent,name,newparent,newname,flags), __return__)
    """
    sdir, ddir = held(state, guest, parent), held(state, guest, newparent)
    if isinstance(sdir, frozenset) or isinstance(ddir, frozenset):
        return refuse(state, (sdir if isinstance(sdir, frozenset) else frozenset())
                      | (ddir if isinstance(ddir, frozenset) else frozenset()))
    if flags == RENAME_EXCHANGE:
        errors = exchange_errors(state, sdir, name, ddir, newname) | write_errors(state)
        if errors:
            return refuse(state, errors)
        return either(ok(swap_entries(state, sdir, name, ddir, newname)),
                      refuse(state, {Errno.EINVAL}))
    errors = rename_errors(state, sdir, name, ddir, newname, flags) | write_errors(state)
    if errors:
        return refuse(state, errors)
    return ok(move_entry(state, sdir, name, ddir, newname))


def opendir(state: State, guest: GuestId, nodeid: NodeId) -> tuple[Outcome, ...]:
    """OPENDIR opens a directory handle for READDIR; anything else is ENOTDIR. A
    directory the host removed while the guest held it may still be opened (Linux opens
    a dead directory a process still reaches; READDIR then lists nothing), or refused with
    ENOENT by a server that looks it up by name.

    pre: 0 <= guest < len(state.guests)
    post: lawful(state, "OPENDIR", (guest, nodeid), __return__)
    """
    ino = held(state, guest, nodeid)
    if isinstance(ino, frozenset):
        return refuse(state, ino)
    if not is_dir(state, ino):
        return refuse(state, {Errno.ENOTDIR})
    opened, fh = open_handle(state, guest, Handle(ino, Access.READ, HandleKind.DIR))
    if dir_errors(state, ino):
        return either(ok(opened, fh), refuse(state, dir_errors(state, ino)))
    return ok(opened, fh)


def readdir(state: State, guest: GuestId, fh: Fh) -> tuple[Outcome, ...]:
    """READDIR lists the directory's entries as they are now, by name (order carries no
    meaning: the spec sorts by name). '.' and '..' are not part of the listing compared
    here: a server lists them too, since a Linux guest shows what the server sends, and a
    harness sets them aside. A directory removed while open lists nothing.

    pre: 0 <= guest < len(state.guests)
    post: lawful(state, "READDIR", (guest, fh), __return__)
    post: all(o.state == state for o in __return__)
    """
    errors = handle_errors(state, guest, fh, HandleKind.DIR)
    if errors:
        return refuse(state, errors)
    handle = find_handle(state, guest, fh, HandleKind.DIR)
    assert handle is not None
    entries = state.inodes[handle.ino].entries
    listing = tuple(DirEntry(name, ino, state.inodes[ino].kind)
                    for name, ino in sorted(entries.items()))
    return ok(state, listing)


def releasedir(state: State, guest: GuestId, fh: Fh) -> tuple[Outcome, ...]:
    """RELEASEDIR ends a directory handle; a second RELEASEDIR is EBADF (HANDLE).

    pre: 0 <= guest < len(state.guests)
    post: lawful(state, "RELEASEDIR", (guest, fh), __return__)
    """
    errors = handle_errors(state, guest, fh, HandleKind.DIR)
    if errors:
        return refuse(state, errors)
    return ok(close_handle(state, guest, fh))


def statfs(state: State, guest: GuestId, nodeid: NodeId) -> tuple[Outcome, ...]:
    """STATFS reports the longest name the export accepts; block and inode counts are
    the host filesystem's and the spec leaves them open.

    pre: 0 <= guest < len(state.guests)
    post: lawful(state, "STATFS", (guest, nodeid), __return__)
    post: all(o.state == state for o in __return__)
    """
    errors = session_errors(state, guest) or node_errors(state, guest, nodeid)
    if errors:
        return refuse(state, errors)
    return ok(state, StatFs(namelen=state.config.name_max))
