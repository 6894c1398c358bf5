"""A guest's session: its nodeids, handles and connection, as requests find them.

These rules decide which errno a request earns before it does anything: a guest that has
not sent INIT (EIO), a nodeid it does not hold (ESTALE or ENOENT: NODEID), a handle it
does not hold or of the wrong kind (EBADF: HANDLE), and a write path in a read-only
export (EROFS: RO-EXPORT); and who a request acts as (OWNERSHIP): the permission its
caller has (EACCES, EPERM), who owns what it makes, what a write by it clears.
"""

from __future__ import annotations

from dataclasses import replace

from pagefs.spec.datatypes import (
    Caller,
    Entry,
    Errno,
    FileKind,
    Guest,
    Handle,
    HandleKind,
    Inode,
    Node,
    State,
)
from pagefs.spec.rules import ROOT_UID, killed_by_write, new_modes, new_owner, permitted
from pagefs.spec.tree import NO_ERRORS, attr_of, put

STALE = frozenset({Errno.ESTALE, Errno.ENOENT})
"""A nodeid the guest does not hold (never had, or forgot): the server cannot know it."""

UNCONNECTED = frozenset({Errno.EIO})
"""Every request but INIT before INIT."""

BAD_HANDLE = frozenset({Errno.EBADF})
READ_ONLY = frozenset({Errno.EROFS})


def with_guest(state: State, guest: int, session: Guest) -> State:
    guests = list(state.guests)
    guests[guest] = session
    return replace(state, guests=tuple(guests))


def session_errors(state: State, guest: int) -> frozenset[Errno]:
    """A request is only served on a connection that completed INIT."""
    return NO_ERRORS if state.guests[guest].connected else UNCONNECTED


def node_ino(state: State, guest: int, nodeid: int) -> int | None:
    """The inode a guest's nodeid names, or None for a nodeid it does not hold."""
    node = state.guests[guest].nodes.get(nodeid)
    return None if node is None else node.ino


def node_errors(state: State, guest: int, nodeid: int) -> frozenset[Errno]:
    """A connected guest naming a nodeid it holds: no error; else EIO or ESTALE/ENOENT."""
    return session_errors(state, guest) or (
        NO_ERRORS if node_ino(state, guest, nodeid) is not None else STALE)


def held(state: State, guest: int, nodeid: int) -> int | frozenset[Errno]:
    """The inode a request's nodeid names, or the errnos the request earns instead."""
    errors = node_errors(state, guest, nodeid)
    if errors:
        return errors
    ino = node_ino(state, guest, nodeid)
    assert ino is not None
    return ino


def write_errors(state: State) -> frozenset[Errno]:
    """Any request that would change the host's files fails in a read-only export."""
    return READ_ONLY if state.config.read_only else NO_ERRORS


def find_handle(state: State, guest: int, fh: int, kind: HandleKind) -> Handle | None:
    """The guest's handle `fh` of this kind (files for I/O, directories for READDIR)."""
    handle = state.guests[guest].handles.get(fh)
    return handle if handle is not None and handle.kind is kind else None


def handle_errors(state: State, guest: int, fh: int, kind: HandleKind) -> frozenset[Errno]:
    """An unknown or released handle, or one of the other kind, is EBADF (HANDLE)."""
    return session_errors(state, guest) or (
        NO_ERRORS if find_handle(state, guest, fh, kind) is not None else BAD_HANDLE)


def remember(state: State, guest: int, ino: int) -> tuple[State, Entry]:
    """A LOOKUP-style reply hands the guest a nodeid for `ino`: the one it already holds
    for that inode (one more lookup for FORGET to undo), or else the next never-used one.

    pre: 0 <= guest < len(state.guests) and ino in state.inodes
    post: __return__[0].guests[guest].nodes[__return__[1].nodeid].ino == ino
    post: __return__[1].attr.ino == ino
    """
    session = state.guests[guest]
    for nodeid, node in session.nodes.items():
        if node.ino == ino:
            nodes = session.nodes.set(nodeid, Node(ino, node.nlookup + 1))
            break
    else:
        nodeid = session.next_nodeid
        nodes = session.nodes.set(nodeid, Node(ino, 1))
        session = replace(session, next_nodeid=nodeid + 1)
    state = with_guest(state, guest, replace(session, nodes=nodes))
    entry = Entry(nodeid=nodeid, generation=state.inodes[ino].generation,
                  attr=attr_of(state, ino))
    return state, entry


def open_handle(state: State, guest: int, handle: Handle) -> tuple[State, int]:
    """A new handle takes the guest's next never-used number (HANDLE).

    pre: 0 <= guest < len(state.guests)
    post: __return__[1] == state.guests[guest].next_fh
    post: __return__[1] not in state.guests[guest].handles
    """
    session = state.guests[guest]
    fh = session.next_fh
    session = replace(session, handles=session.handles.set(fh, handle), next_fh=fh + 1)
    return with_guest(state, guest, session), fh


def close_handle(state: State, guest: int, fh: int) -> State:
    """The handle ends; mappings made through it stay (LIFETIME)."""
    session = state.guests[guest]
    return with_guest(state, guest, replace(session, handles=session.handles.remove(fh)))


# --- who a request acts as (OWNERSHIP) ---
# The spec checks the caller's permission on the requests the ownership family of the
# conformance suite sends as a user (LOOKUP, CREATE, MKDIR, MKNOD, SYMLINK, OPEN, SETATTR,
# WRITE); the other requests are checked as if made by root (every other family's guests
# are root).

def caller(state: State, guest: int) -> Caller:
    return state.config.caller(guest)


def access_errors(state: State, guest: int, ino: int, want: int) -> frozenset[Errno]:
    """EACCES when the guest's caller lacks `want` (4 read, 2 write, 1 search) on `ino`."""
    who, inode = caller(state, guest), state.inodes[ino]
    return NO_ERRORS if permitted(who.uid, who.gid, inode.uid, inode.gid, inode.mode,
                                  want) else frozenset({Errno.EACCES})


def owner_errors(state: State, guest: int, ino: int) -> frozenset[Errno]:
    """EPERM when the caller neither owns `ino` nor is root (chmod, an explicit time)."""
    who = caller(state, guest)
    return NO_ERRORS if who.uid in (ROOT_UID, state.inodes[ino].uid) else frozenset(
        {Errno.EPERM})


def made(state: State, guest: int, dir_ino: int, inode: Inode) -> tuple[Inode, ...]:
    """`inode` as the caller makes it in `dir_ino`: its owner and group, and its bits less
    the caller's umask with set-gid inherited or stripped (rules.new_modes); a symlink's
    bits are always 0777."""
    who, parent = caller(state, guest), state.inodes[dir_ino]
    uid, gid = new_owner(who.uid, who.gid, parent.mode, parent.gid)
    if inode.kind is FileKind.LNK:
        return (replace(inode, uid=uid, gid=gid),)
    modes = new_modes(who.uid, who.gid, inode.mode, who.umask, inode.kind is FileKind.DIR,
                      parent.mode, parent.gid)
    return tuple(replace(inode, uid=uid, gid=gid, mode=m) for m in sorted(modes))


def written_by(state: State, guest: int, ino: int) -> State:
    """A regular file the caller wrote or truncated: set-id cleared unless it is root."""
    inode = state.inodes[ino]
    if inode.kind is not FileKind.REG:
        return state
    who = caller(state, guest)
    return put(state, ino, replace(inode, mode=killed_by_write(who.uid, who.gid, inode.gid,
                                                                inode.mode)))
