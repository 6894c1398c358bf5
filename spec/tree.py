"""The host's tree: finding, adding, removing and renaming entries, and inode lifetime.

Host operations and guest requests both change the tree through these rules, so POSIX's
namespace rules (NAMESPACE) are written once. Each `*_errors` rule returns every errno
that applies; when several apply, any of them is allowed, as POSIX allows.
"""

from __future__ import annotations

from dataclasses import replace

from pagefs.spec.datatypes import (
    RENAME_NOREPLACE,
    ROOT_INO,
    Attr,
    Errno,
    FileKind,
    Inode,
    Mtime,
    State,
)
from pagefs.spec.rules import is_dot, name_errors, size_errors, write_bytes

NO_ERRORS: frozenset[Errno] = frozenset()


def child(state: State, dir_ino: int, name: bytes) -> int | None:
    """The inode a directory entry names, or None when there is no such entry."""
    return state.inodes[dir_ino].entries.get(name)


def is_dir(state: State, ino: int) -> bool:
    return state.inodes[ino].kind is FileKind.DIR


def attr_of(state: State, ino: int) -> Attr:
    """An inode's attributes as every guest and the host see them now (COH-META): size and
    mtime are the inode's current ones. A directory's size and link count are left open."""
    inode = state.inodes[ino]
    directory = inode.kind is FileKind.DIR
    return Attr(
        ino=ino,
        kind=inode.kind,
        mode=inode.mode,
        nlink=None if directory else inode.nlink,
        size=None if directory else inode.size,
        mtime=inode.mtime,
        uid=inode.uid,
        gid=inode.gid,
    )


def bump(inode: Inode) -> Inode:
    """A change to an inode's data, size or entries gives it a new mtime version."""
    return replace(inode, mtime=Mtime(inode.mtime.version + 1, None))


def with_data(inode: Inode, data: bytes) -> Inode:
    """New file contents: a new mtime version, not yet on stable storage (DURABLE), and,
    when the size changes, a zeroed tail (what lay past the old end never becomes data)."""
    tail = inode.tail if len(data) == inode.size else b""
    return replace(bump(inode), data=data, tail=tail, dirty=True)


def put(state: State, ino: int, inode: Inode) -> State:
    return replace(state, inodes=state.inodes.set(ino, inode))


def is_ancestor(state: State, ancestor: int, ino: int) -> bool:
    """True when directory `ancestor` is `ino` or lies on its path to the root."""
    seen = 0
    while seen <= len(state.inodes):
        if ino == ancestor:
            return True
        if ino == ROOT_INO:
            return False
        ino = state.inodes[ino].parent
        seen += 1
    return False


def dir_errors(state: State, dir_ino: int) -> frozenset[Errno]:
    """A name can only be looked up in a directory: ENOTDIR otherwise. A directory that
    was removed while a guest still held it is empty for good: nothing can be created in
    it (ENOENT, as Linux answers for a dead directory)."""
    if not is_dir(state, dir_ino):
        return frozenset({Errno.ENOTDIR})
    if state.inodes[dir_ino].nlink <= 0 and dir_ino != ROOT_INO:
        return frozenset({Errno.ENOENT})
    return NO_ERRORS


def create_errors(state: State, dir_ino: int, name: bytes) -> frozenset[Errno]:
    """Creating a name (file, directory, symlink) needs a directory, a valid name, and no
    entry of that name: EEXIST otherwise; '.' and '..' always exist (EEXIST, or EINVAL
    from servers that refuse them by name).

    pre: dir_ino in state.inodes
    post: __return__ or (is_dir(state, dir_ino) and child(state, dir_ino, name) is None)
    post: not is_dot(name) or Errno.EEXIST in __return__
    """
    errors = set(dir_errors(state, dir_ino) | name_errors(name, state.config.name_max))
    if is_dot(name):
        errors |= {Errno.EEXIST, Errno.EINVAL}
    elif not errors and child(state, dir_ino, name) is not None:
        errors.add(Errno.EEXIST)
    return frozenset(errors)


def _existing_errors(state: State, dir_ino: int, name: bytes,
                     dot: frozenset[Errno]) -> frozenset[Errno]:
    errors = set(dir_errors(state, dir_ino) | name_errors(name, state.config.name_max))
    if is_dot(name):
        errors |= dot
    elif not errors and child(state, dir_ino, name) is None:
        errors.add(Errno.ENOENT)
    return frozenset(errors)


def unlink_errors(state: State, dir_ino: int, name: bytes) -> frozenset[Errno]:
    """UNLINK removes a non-directory name: ENOENT when absent, EISDIR for a directory
    (Linux; POSIX also allows EPERM). '.' and '..' are directories (EISDIR, or EINVAL).

    pre: dir_ino in state.inodes
    post: __return__ or not is_dir(state, state.inodes[dir_ino].entries[name])
    """
    dot = frozenset({Errno.EISDIR, Errno.EPERM, Errno.EINVAL})
    errors = set(_existing_errors(state, dir_ino, name, dot))
    if not errors:
        target = child(state, dir_ino, name)
        if target is not None and is_dir(state, target):
            errors |= {Errno.EISDIR, Errno.EPERM}
    return frozenset(errors)


def rmdir_errors(state: State, dir_ino: int, name: bytes) -> frozenset[Errno]:
    """RMDIR removes an empty directory: ENOENT when absent, ENOTDIR for a non-directory,
    ENOTEMPTY (or POSIX's EEXIST) when it has entries. '.' is EINVAL, '..' ENOTEMPTY.

    pre: dir_ino in state.inodes
    post: __return__ or not state.inodes[state.inodes[dir_ino].entries[name]].entries
    """
    dot = frozenset({Errno.EINVAL, Errno.ENOTEMPTY, Errno.EBUSY})
    errors = set(_existing_errors(state, dir_ino, name, dot))
    if not errors:
        target = child(state, dir_ino, name)
        if target is not None and not is_dir(state, target):
            errors.add(Errno.ENOTDIR)
        elif target is not None and state.inodes[target].entries:
            errors |= {Errno.ENOTEMPTY, Errno.EEXIST}
    return frozenset(errors)


def _two_names_errors(state: State, sdir: int, sname: bytes, ddir: int,
                      dname: bytes) -> frozenset[Errno]:
    """What RENAME and RENAME_EXCHANGE both ask of their two names: directories to look
    in, valid names, and neither '.' nor '..' (EBUSY, or EINVAL)."""
    limit = state.config.name_max
    errors = set(dir_errors(state, sdir) | dir_errors(state, ddir)
                 | name_errors(sname, limit) | name_errors(dname, limit))
    if is_dot(sname) or is_dot(dname):
        errors |= {Errno.EBUSY, Errno.EINVAL}
    return frozenset(errors)


def rename_errors(state: State, sdir: int, sname: bytes, ddir: int, dname: bytes,
                  flags: int) -> frozenset[Errno]:
    """RENAME moves an entry: ENOENT when the source is absent; EEXIST with
    RENAME_NOREPLACE over an existing name; a directory only replaces an empty directory
    (ENOTDIR, EISDIR, ENOTEMPTY/EEXIST) and never moves into itself (EINVAL); '.' and
    '..' cannot be renamed or replaced (EBUSY, or EINVAL); unknown flags are EINVAL.

    pre: sdir in state.inodes and ddir in state.inodes
    post: __return__ or child(state, sdir, sname) is not None
    post: __return__ or not flags & RENAME_NOREPLACE or child(state, ddir, dname) is None
    """
    errors = set(_two_names_errors(state, sdir, sname, ddir, dname))
    if flags & ~RENAME_NOREPLACE or flags < 0:
        errors.add(Errno.EINVAL)
    if errors:
        return frozenset(errors | _missing_source(state, sdir, sname))
    source = child(state, sdir, sname)
    if source is None:
        return frozenset({Errno.ENOENT})
    target = child(state, ddir, dname)
    if is_dir(state, source) and is_ancestor(state, source, ddir):
        errors.add(Errno.EINVAL)
    if target is None:
        return frozenset(errors)
    if flags & RENAME_NOREPLACE:
        errors.add(Errno.EEXIST)  # even when both names are one entry, as Linux does
    if target == source:
        return frozenset(errors)
    if is_dir(state, source) and not is_dir(state, target):
        errors.add(Errno.ENOTDIR)
    if not is_dir(state, source) and is_dir(state, target):
        errors.add(Errno.EISDIR)
    if is_dir(state, target) and state.inodes[target].entries:
        errors |= {Errno.ENOTEMPTY, Errno.EEXIST}
    return frozenset(errors)


def _missing_source(state: State, sdir: int, sname: bytes) -> frozenset[Errno]:
    """Which check comes first is the server's choice: Linux looks the source up before
    it judges the new name (for RENAME and RENAME_EXCHANGE alike), so beside the other
    errors, a valid source name that is absent may be ENOENT as well."""
    valid = not (dir_errors(state, sdir) or is_dot(sname)
                 or name_errors(sname, state.config.name_max))
    return frozenset({Errno.ENOENT}) if valid and child(state, sdir, sname) is None \
        else frozenset()


def exchange_errors(state: State, sdir: int, sname: bytes, ddir: int,
                    dname: bytes) -> frozenset[Errno]:
    """RENAME_EXCHANGE swaps two existing names atomically: ENOENT unless both exist, EINVAL
    when a directory would land inside itself; '.' and '..' cannot take part (EBUSY, or
    EINVAL).

    pre: sdir in state.inodes and ddir in state.inodes
    post: __return__ or None not in (child(state, sdir, sname), child(state, ddir, dname))
    """
    errors = set(_two_names_errors(state, sdir, sname, ddir, dname))
    if errors:
        return frozenset(errors | _missing_source(state, sdir, sname))
    source, target = child(state, sdir, sname), child(state, ddir, dname)
    if source is None or target is None:
        return frozenset({Errno.ENOENT})
    if source != target and ((is_dir(state, source) and is_ancestor(state, source, ddir))
                             or (is_dir(state, target) and is_ancestor(state, target, sdir))):
        errors.add(Errno.EINVAL)
    return frozenset(errors)


def swap_entries(state: State, sdir: int, sname: bytes, ddir: int, dname: bytes) -> State:
    """Exchange after `exchange_errors` allowed it: each name now names the other's inode;
    both inodes live on, with every handle and nodeid still meaning them."""
    source, target = state.inodes[sdir].entries[sname], state.inodes[ddir].entries[dname]
    if source == target:
        return state
    state = _link(state, sdir, sname, target)
    return _link(state, ddir, dname, source)


def _link(state: State, directory: int, name: bytes, ino: int) -> State:
    """`name` in `directory` now names the existing inode `ino` (the directory gets a new
    mtime version); a directory moved there takes it as its parent."""
    parent = state.inodes[directory]
    state = put(state, directory, bump(replace(parent, entries=parent.entries.set(name, ino))))
    moved = state.inodes[ino]
    if moved.kind is FileKind.DIR:
        state = put(state, ino, replace(moved, parent=directory))
    return state


def _unlink(state: State, directory: int, name: bytes) -> State:
    """`name` leaves `directory` (which gets a new mtime version); its inode is untouched."""
    parent = state.inodes[directory]
    return put(state, directory, bump(replace(parent, entries=parent.entries.remove(name))))


def holds(state: State, ino: int, offset: int, data: bytes) -> bool:
    """Whether file `ino` holds `data` at `offset` (for contracts about writes)."""
    return state.inodes[ino].data[offset:offset + len(data)] == data


def write_data(state: State, ino: int, offset: int, data: bytes) -> State | frozenset[Errno]:
    """A write of `data` at `offset` into regular file `ino`, by a guest's WRITE or by the
    host: EINVAL for a negative offset, EFBIG past the largest size; a gap reads as
    zeros; an empty write changes nothing.

    pre: ino in state.inodes
    post: isinstance(__return__, frozenset) or holds(__return__, ino, offset, data)
    """
    if offset < 0:
        return frozenset({Errno.EINVAL})
    if data and size_errors(offset + len(data), state.config.max_size):
        return size_errors(offset + len(data), state.config.max_size)
    if not data:
        return state
    inode = state.inodes[ino]
    return put(state, ino, with_data(inode, write_bytes(inode.data, offset, data)))


def add_entry(state: State, dir_ino: int, name: bytes, inode: Inode) -> tuple[State, int]:
    """Create a new inode named `name` in `dir_ino`; the new inode gets the next unused
    inode number (never reused), and the directory a new mtime version."""
    ino = state.next_ino
    state = replace(state, inodes=state.inodes.set(ino, replace(inode, nlink=1)),
                    next_ino=ino + 1)
    return _link(state, dir_ino, name, ino), ino


def remove_entry(state: State, dir_ino: int, name: bytes) -> State:
    """Remove a name; its inode loses a link but lives on while a guest still holds it
    (a nodeid, a handle or a mapping: LIFETIME)."""
    ino = state.inodes[dir_ino].entries[name]
    state = _unlink(state, dir_ino, name)
    target = state.inodes[ino]
    return put(state, ino, replace(target, nlink=target.nlink - 1))


def move_entry(state: State, sdir: int, sname: bytes, ddir: int, dname: bytes) -> State:
    """Rename after `rename_errors` allowed it: whatever `dname` named loses that link,
    then the source inode (the same inode, so open handles follow it) takes the name."""
    source = state.inodes[sdir].entries[sname]
    if child(state, ddir, dname) == source:
        return state
    if child(state, ddir, dname) is not None:
        state = remove_entry(state, ddir, dname)
    return _link(_unlink(state, sdir, sname), ddir, dname, source)


def held_inodes(state: State) -> frozenset[int]:
    """Inodes some guest still holds by nodeid, handle or mapping."""
    held: set[int] = {ROOT_INO}
    for guest in state.guests:
        held |= {node.ino for node in guest.nodes.values()}
        held |= {handle.ino for handle in guest.handles.values()}
        held |= {m.ino for m in guest.window if m is not None}
    return frozenset(held)


def collect(state: State) -> State:
    """Free every inode with no name left that no guest holds: its data is gone for good
    and its number is never handed out again (so nothing can reach a freed page).

    post: held_inodes(state) <= set(__return__.inodes)
    post: all(i.nlink > 0 or n in held_inodes(state) for n, i in __return__.inodes.items())
    """
    held = held_inodes(state)
    dead = [ino for ino, inode in state.inodes.items() if inode.nlink <= 0 and ino not in held]
    if not dead:
        return state
    inodes = state.inodes
    for ino in dead:
        inodes = inodes.remove(ino)
    return replace(state, inodes=inodes)


def resolve_path(state: State, path: bytes) -> int | frozenset[Errno]:
    """The inode a host path names, walking from the export root without following
    symlinks (CONFINE): ENOENT for a missing component, ENOTDIR for a non-directory one,
    EINVAL for '.', '..' or empty components. b"" is the root.

    post: isinstance(__return__, frozenset) or __return__ in state.inodes
    """
    ino = ROOT_INO
    if not path:
        return ino
    for name in path.split(b"/"):
        if not name or is_dot(name):
            return frozenset({Errno.EINVAL})
        if not is_dir(state, ino):
            return frozenset({Errno.ENOTDIR})
        found = child(state, ino, name)
        if found is None:
            return frozenset({Errno.ENOENT})
        ino = found
    return ino


def resolve_parent(state: State, path: bytes) -> tuple[int, bytes] | frozenset[Errno]:
    """The directory that would hold a host path's last component, and that component.
    Every component before the last is walked as a directory, so a regular file there is
    ENOTDIR at once, before anything else about the request is judged (Linux: rename of
    "d/a" to "e/a" with d a regular file and no e is ENOTDIR, not ENOENT)."""
    head, _, name = path.rpartition(b"/")
    parent = resolve_path(state, head)
    if isinstance(parent, frozenset):
        return parent
    if not is_dir(state, parent):
        return frozenset({Errno.ENOTDIR})
    if not name:
        return frozenset({Errno.EINVAL})
    return parent, name
