"""Host operations: what the host's own processes do to the exported files, at any time,
between any two guest steps.

The host works on paths under the export root, never follows a symlink (CONFINE), and is
not bound by the export's `read_only` flag: a read-only export stops guests writing, not
the host, and guests still see host changes (RO-EXPORT). `host.read` and `host.stat`
change nothing; they are how COH-WRITE and COH-META are observed from the host's side.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from pagefs.spec.datatypes import (
    Data,
    Errno,
    FileKind,
    Inode,
    Length,
    Mode,
    Offset,
    Outcome,
    Path,
    State,
    Target,
)
from pagefs.spec.outcomes import lawful, ok, refuse  # noqa: F401 (contracts)
from pagefs.spec.rules import read_bytes, resize, size_errors
from pagefs.spec.tree import (
    add_entry,
    attr_of,
    create_errors,
    move_entry,
    put,
    remove_entry,
    rename_errors,
    resolve_parent,
    resolve_path,
    rmdir_errors,
    unlink_errors,
    with_data,
    write_data,
)


def _regular(state: State, path: bytes) -> int | frozenset[Errno]:
    """The regular file a host data operation names: EISDIR for a directory, ELOOP for a
    symlink (opened without following it), EINVAL for anything else."""
    ino = resolve_path(state, path)
    if isinstance(ino, frozenset):
        return ino
    kind = state.inodes[ino].kind
    if kind is FileKind.DIR:
        return frozenset({Errno.EISDIR})
    if kind is FileKind.LNK:
        return frozenset({Errno.ELOOP})
    if kind is not FileKind.REG:
        return frozenset({Errno.EINVAL})
    return ino


def write(state: State, path: Path, offset: Offset, data: Data) -> tuple[Outcome, ...]:
    """The host writes `data` at `offset` (zero-filling any gap); every guest sees it at
    once, by READ or through a mapping (COH-READ).

    post: lawful(state, "host.write", (path, offset, data), __return__)
    """
    ino = _regular(state, path)
    if isinstance(ino, frozenset):
        return refuse(state, ino)
    written = write_data(state, ino, offset, data)
    if isinstance(written, frozenset):
        return refuse(state, written)
    return ok(written, len(data))


def truncate(state: State, path: Path, size: Length) -> tuple[Outcome, ...]:
    """The host truncates or extends a file. Pages wholly beyond the new end fault for
    every guest that maps them (EOF-FAULT: contained, never a hang); extension reads as
    zeros, never as bytes that lay past the old end.

    post: lawful(state, "host.truncate", (path, size), __return__)
    """
    ino = _regular(state, path)
    if isinstance(ino, frozenset):
        return refuse(state, ino)
    if size < 0:
        return refuse(state, {Errno.EINVAL})
    if size_errors(size, state.config.max_size):
        return refuse(state, size_errors(size, state.config.max_size))
    inode = state.inodes[ino]
    return ok(put(state, ino, with_data(inode, resize(inode.data, size))))


def _at_parent(state: State, path: bytes, rule: Callable[[State, int, bytes], frozenset[Errno]],
               change: Callable[[State, int, bytes], State]) -> tuple[Outcome, ...]:
    """A change to one name in its parent directory, made if `rule` finds nothing against
    it: how the host makes and removes names."""
    where = resolve_parent(state, path)
    if isinstance(where, frozenset):
        return refuse(state, where)
    errors = rule(state, *where)
    if errors:
        return refuse(state, errors)
    return ok(change(state, *where))


def _make(state: State, path: bytes, inode: Inode) -> tuple[Outcome, ...]:
    return _at_parent(state, path, create_errors,
                      lambda s, directory, name: add_entry(s, directory, name, inode)[0])


def create(state: State, path: Path, mode: Mode) -> tuple[Outcome, ...]:
    """The host creates an empty regular file (EEXIST when the name exists).

    post: lawful(state, "host.create", (path, mode), __return__)
    """
    return _make(state, path, Inode(kind=FileKind.REG, mode=mode & 0o7777))


def mkdir(state: State, path: Path, mode: Mode) -> tuple[Outcome, ...]:
    """The host makes an empty directory.

    post: lawful(state, "host.mkdir", (path, mode), __return__)
    """
    return _make(state, path, Inode(kind=FileKind.DIR, mode=mode & 0o7777))


def symlink(state: State, target: Target, path: Path) -> tuple[Outcome, ...]:
    """The host makes a symlink; its target may point anywhere, even outside the export,
    since nothing in pagefs follows it (CONFINE).

    post: lawful(state, "host.symlink", (target, path), __return__)
    """
    if not target or bytes(1) in target:
        return refuse(state, {Errno.ENOENT} if not target else {Errno.EINVAL})
    return _make(state, path, Inode(kind=FileKind.LNK, mode=0o777, data=target))


def mkfifo(state: State, path: Path, mode: Mode) -> tuple[Outcome, ...]:
    """The host makes a FIFO; guests may see it but the host never opens it for them.

    post: lawful(state, "host.mkfifo", (path, mode), __return__)
    """
    return _make(state, path, Inode(kind=FileKind.FIFO, mode=mode & 0o7777))


def unlink(state: State, path: Path) -> tuple[Outcome, ...]:
    """The host removes a name; a file that a guest holds open or mapped keeps its data
    until the last handle and mapping go (LIFETIME).

    post: lawful(state, "host.unlink", (path,), __return__)
    """
    return _at_parent(state, path, unlink_errors, remove_entry)


def rmdir(state: State, path: Path) -> tuple[Outcome, ...]:
    """The host removes an empty directory.

    post: lawful(state, "host.rmdir", (path,), __return__)
    """
    return _at_parent(state, path, rmdir_errors, remove_entry)


def rename(state: State, old: Path, new: Path) -> tuple[Outcome, ...]:
    """The host renames, replacing what `new` named; guests' nodeids and handles keep
    meaning the inodes they meant (NODEID, LIFETIME).

    post: lawful(state, "host.rename", (old, new), __return__)
    """
    source = resolve_parent(state, old)
    if isinstance(source, frozenset):
        return refuse(state, source)
    target = resolve_parent(state, new)
    if isinstance(target, frozenset):
        return refuse(state, target)
    errors = rename_errors(state, *source, *target, 0)
    if errors:
        return refuse(state, errors)
    return ok(move_entry(state, *source, *target))


def chmod(state: State, path: Path, mode: Mode) -> tuple[Outcome, ...]:
    """The host changes permission bits; guests see the new mode at their next GETATTR.
    A symlink is not followed, so changing its mode is refused (ELOOP or EOPNOTSUPP).

    post: lawful(state, "host.chmod", (path, mode), __return__)
    """
    ino = resolve_path(state, path)
    if isinstance(ino, frozenset):
        return refuse(state, ino)
    if state.inodes[ino].kind is FileKind.LNK:
        return refuse(state, {Errno.ELOOP, Errno.EOPNOTSUPP})
    return ok(put(state, ino, replace(state.inodes[ino], mode=mode & 0o7777)))


def read(state: State, path: Path, offset: Offset, length: Length) -> tuple[Outcome, ...]:
    """The host reads its file: what guests stored through writable mappings is there at
    once, without msync or fsync (COH-WRITE, COH-PEER).

    post: lawful(state, "host.read", (path, offset, length), __return__)
    post: all(o.state == state for o in __return__)
    """
    ino = _regular(state, path)
    if isinstance(ino, frozenset):
        return refuse(state, ino)
    if offset < 0 or length < 0:
        return refuse(state, {Errno.EINVAL})
    return ok(state, read_bytes(state.inodes[ino].data, offset, length))


def stat(state: State, path: Path) -> tuple[Outcome, ...]:
    """The host's stat(2) of a path (not following a final symlink): the attributes
    guests must see too (COH-META).

    post: lawful(state, "host.stat", (path,), __return__)
    post: all(o.state == state for o in __return__)
    """
    ino = resolve_path(state, path)
    if isinstance(ino, frozenset):
        return refuse(state, ino)
    return ok(state, attr_of(state, ino))
