"""The named properties of pagefs, as predicates on the spec's states and steps.

Each property has the definition in words that docs/DESIGN.md gives it, and one or both of:
an *invariant*, a predicate every reachable state satisfies; and a *step* property, a
predicate on one step (state, operation, arguments, outcome). They are written
independently of the operations (byte by byte, name by name), so that they check the
operations rather than restate them. The proofs and the conformance suite use these
names and definitions; `violations` and `step_violations` evaluate them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from pagefs.spec.datatypes import (
    FAULT,
    O_TRUNC,
    ROOT_INO,
    ROOT_NODEID,
    Attr,
    Created,
    Entry,
    Err,
    Errno,
    FileKind,
    Handle,
    HandleKind,
    Inode,
    Ok,
    Outcome,
    State,
)


@dataclass(frozen=True)
class Step:
    """One step of the state machine: `op` with `args` from `state` gave `outcome`."""

    state: State
    op: str
    # Each argument's type is the operation's parameter's (spec/registry.py); a predicate
    # asks `op` first, so what it reads is known to it though not to a type checker.
    args: tuple[Any, ...]
    outcome: Outcome

    @property
    def after(self) -> State:
        return self.outcome.state

    @property
    def result(self) -> object:
        return self.outcome.result

    def arg(self, index: int) -> Any:
        return self.args[index]


@dataclass(frozen=True)
class Property:
    """A named property: its definition in words, and its predicates (None when the
    property says nothing of that form)."""

    name: str
    definition: str
    invariant: Callable[[State], bool] | None = None
    step: Callable[[Step], bool] | None = None


# --- what the host shows, byte by byte, independent of the memory rules ---


def _window_target(state: State, guest: int, woffset: int) -> tuple[int, int, bool] | None:
    """(inode, file offset, writable) behind one window byte, or None when unmapped."""
    config = state.config
    if not 0 <= woffset < config.window_size:
        return None
    mapped = state.guests[guest].window[woffset // config.range_size]
    if mapped is None:
        return None
    return mapped.ino, mapped.foffset + woffset % config.range_size, mapped.writable


def _beyond_eof(state: State, ino: int, foffset: int) -> bool:
    page = foffset - foffset % state.config.page_size
    return page >= state.inodes[ino].size


def _allowed_bytes(state: State, ino: int, foffset: int) -> set[int]:
    """The values a load may see at a file offset in a page not beyond end of file: the
    data byte, or past end of file zero or what a guest stored in the tail."""
    inode = state.inodes[ino]
    if foffset < inode.size:
        return {inode.data[foffset]}
    index = foffset - inode.size
    return {0, inode.tail[index]} if index < len(inode.tail) else {0}


def _accessible(state: State, guest: int, woffset: int, store: bool) -> bool:
    target = _window_target(state, guest, woffset)
    if target is None:
        return False
    ino, foffset, writable = target
    return not _beyond_eof(state, ino, foffset) and (writable or not store)


def _guest_op(step: Step) -> bool:
    return not step.op.startswith("host.")


def _handle(step: Step, kind: HandleKind = HandleKind.FILE) -> Handle | None:
    handle = step.state.guests[step.arg(0)].handles.get(step.arg(1))
    return handle if handle is not None and handle.kind is kind else None


def _contents(inode: Inode) -> Inode:
    """An inode without its durability flag: what a write path changes."""
    return replace(inode, dirty=False)


def _files(state: State) -> dict[int, Inode]:
    return {ino: _contents(inode) for ino, inode in state.inodes.items()}


# --- the properties ---


def coh_read(step: Step) -> bool:
    """A successful LOAD returns, byte by byte, the host's current byte at the file
    offset each window byte maps to (past end of file in the last page: zero, or what a
    guest stored there); a successful READ returns the file's bytes from the offset."""
    result = step.result
    if step.op == "LOAD" and isinstance(result, Ok):
        guest, woffset, _ = step.args
        if not isinstance(result.value, bytes):
            return False
        for k, byte in enumerate(result.value):
            target = _window_target(step.state, guest, woffset + k)
            if target is None or byte not in _allowed_bytes(step.state, *target[:2]):
                return False
        return True
    if step.op == "READ" and isinstance(result, Ok):
        handle = _handle(step)
        _, _, offset, length = step.args
        data = step.state.inodes[handle.ino].data if handle else b""
        return result.value == data[offset:offset + length]
    return True


def _stored_bytes(step: Step) -> list[tuple[int, int, int]]:
    """(inode, file offset, byte) of every byte a successful STORE put inside a file."""
    guest, woffset, data = step.args
    placed = []
    for k, byte in enumerate(data):
        target = _window_target(step.state, guest, woffset + k)
        if target is not None and target[1] < step.state.inodes[target[0]].size:
            placed.append((target[0], target[1], byte))
    return placed


def coh_write(step: Step) -> bool:
    """After a successful STORE, every stored byte that lies inside the file is the
    host's data at once."""
    if step.op != "STORE" or not isinstance(step.result, Ok):
        return True
    return all(step.after.inodes[ino].data[f] == byte for ino, f, byte in _stored_bytes(step))


def coh_peer(step: Step) -> bool:
    """After a successful STORE, every guest whose window maps a stored byte's page
    shows exactly that byte."""
    if step.op != "STORE" or not isinstance(step.result, Ok):
        return True
    after = step.after
    stored = {(ino, f): byte for ino, f, byte in _stored_bytes(step)}
    range_size = after.config.range_size
    for guest in after.guests:
        for mapped in guest.window:
            if mapped is None:
                continue
            for (ino, f), byte in stored.items():
                shown = mapped.ino == ino and mapped.foffset <= f < mapped.foffset + range_size
                if shown and _allowed_bytes(after, ino, f) != {byte}:
                    return False
    return True


def _attrs_of(value: object) -> list[Attr]:
    if isinstance(value, Attr):
        return [value]
    if isinstance(value, Entry):
        return [value.attr]
    if isinstance(value, Created):
        return [value.entry.attr]
    return []


def coh_meta(step: Step) -> bool:
    """Every attribute a guest is given (GETATTR, SETATTR, LOOKUP, CREATE, ...) carries
    the inode's current size and mtime."""
    if not isinstance(step.result, Ok):
        return True
    for attr in _attrs_of(step.result.value):
        inode = step.after.inodes.get(attr.ino)
        if inode is None or attr.mtime != inode.mtime or attr.kind is not inode.kind:
            return False
        if inode.kind is not FileKind.DIR and attr.size != inode.size:
            return False
    return True


def eof_fault(step: Step) -> bool:
    """LOAD and STORE fault exactly when some byte falls outside the window, in a free
    range, in a page wholly beyond end of file, or (for STORE) in a read-only range; a
    fault changes no guest's session, and a faulting LOAD changes nothing at all."""
    if step.op not in ("LOAD", "STORE"):
        return True
    guest, woffset, third = step.args
    store = step.op == "STORE"
    length = len(third) if store else third
    if length < 0:
        return step.result == FAULT
    should_fault = not all(_accessible(step.state, guest, woffset + k, store)
                           for k in range(length))
    if should_fault != (step.result == FAULT):
        return False
    if step.result == FAULT:
        others_same = all(step.after.guests[g] == step.state.guests[g]
                          for g in range(len(step.state.guests)))
        return others_same and (store or step.after == step.state)
    return True


def ro_export_invariant(state: State) -> bool:
    """In a read-only export no guest holds a handle with write access or a writable
    mapping."""
    if not state.config.read_only:
        return True
    return all(not h.access.can_write for g in state.guests for h in g.handles.values()) and all(
        m is None or not m.writable for g in state.guests for m in g.window)


def ro_export_step(step: Step) -> bool:
    """In a read-only export no guest request or access changes any file's contents,
    attributes or names."""
    if not step.state.config.read_only or not _guest_op(step):
        return True
    before = {i: replace(n, tail=b"") for i, n in _files(step.state).items()}
    after = {i: replace(n, tail=b"") for i, n in _files(step.after).items()}
    return all(after[i] == before[i] for i in after if i in before) and set(after) <= set(before)


def access_mode(step: Step) -> bool:
    """A successful WRITE, or writable SETUPMAPPING, went through a handle opened with
    write access."""
    if not isinstance(step.result, Ok):
        return True
    if step.op == "WRITE":
        handle = _handle(step)
        return handle is not None and handle.access.can_write
    if step.op == "SETUPMAPPING" and step.arg(4):
        handle = _handle(step)
        return handle is not None and handle.access.can_write
    return True


_MAKES = ("CREATE", "MKDIR", "MKNOD", "SYMLINK")


def ownership(step: Step) -> bool:
    """Who a request acts as (its guest's caller): an inode it made is the caller's, in the
    directory's group when that is set-gid, with none of the umask's bits, set-gid when it
    is a directory made in a set-gid directory, and not set-gid when it is a file whose
    group the caller is not in (unless root); a user's change of a file's data leaves it
    neither set-uid nor set-gid and group-executable, nor set-gid of a group not the
    caller's; only the owner or root changes a
    mode; no step changes an existing inode's owner or group."""
    if not _guest_op(step) or step.op in ("LOAD", "STORE") or not isinstance(step.result,
                                                                               Ok):
        return True
    who = step.state.config.caller(step.arg(0))
    before, after = step.state.inodes, step.after.inodes
    if any((after[i].uid, after[i].gid) != (n.uid, n.gid) for i, n in before.items()
           if i in after):
        return False
    for ino, inode in after.items():
        if ino in before:
            continue
        if step.op not in _MAKES:
            return False
        parent = after[step.state.guests[step.arg(0)].nodes[step.arg(1)].ino]
        setgid_dir = bool(parent.mode & 0o2000)
        if inode.uid != who.uid or inode.gid != (parent.gid if setgid_dir else who.gid):
            return False
        if inode.kind is not FileKind.LNK and inode.mode & who.umask:
            return False
        if inode.kind is FileKind.DIR and bool(inode.mode & 0o2000) != setgid_dir:
            return False
        stranger = who.uid != 0 and who.gid != inode.gid
        if inode.kind is FileKind.REG and stranger and inode.mode & 0o2010 == 0o2010:
            return False
    changed = _data_changed_ino(step)
    if who.uid != 0 and changed is not None and after[changed].kind is FileKind.REG:
        mode, stranger = after[changed].mode, who.gid != after[changed].gid
        if mode & 0o4000 or mode & 0o2010 == 0o2010 or (stranger and mode & 0o2000):
            return False
    if step.op == "SETATTR" and step.arg(3) is not None:
        node = step.state.guests[step.arg(0)].nodes[step.arg(1)]
        return who.uid in (0, before[node.ino].uid)
    return True


def _data_changed_ino(step: Step) -> int | None:
    """The file whose data a successful step wrote or truncated: WRITE of some bytes,
    SETATTR with a size, OPEN with O_TRUNC."""
    guest = step.state.guests[step.arg(0)]
    if step.op == "WRITE" and step.arg(3):
        handle = guest.handles.get(step.arg(1))
        return handle.ino if handle else None
    if (step.op == "SETATTR" and step.arg(2) is not None) or (
            step.op == "OPEN" and step.arg(2) & O_TRUNC):
        node = guest.nodes.get(step.arg(1))
        return node.ino if node else None
    return None


def isolation_invariant(state: State) -> bool:
    """Every mapped range names a live inode number that was handed out once (numbers
    are never reused, so a range can never come to show another file)."""
    return all(
        m is None or (m.ino in state.inodes and m.ino < state.next_ino)
        for g in state.guests for m in g.window)


def isolation_step(step: Step) -> bool:
    """A STORE changes only files the guest maps writable; READ and WRITE touch only the
    handle's file; SETUPMAPPING maps only the handle's file."""
    if step.op == "SETUPMAPPING" and isinstance(step.result, Ok):
        handle = _handle(step)
        return handle is not None and all(
            m is None or m in step.state.guests[step.arg(0)].window or m.ino == handle.ino
            for m in step.after.guests[step.arg(0)].window)
    if step.op == "STORE":
        guest = step.arg(0)
        writable = {m.ino for m in step.state.guests[guest].window if m and m.writable}
        before, after = _files(step.state), _files(step.after)
        changed = {i for i in after if after[i] != before.get(i)}
        return changed <= writable
    if step.op in ("WRITE", "READ") and isinstance(step.result, Ok):
        handle = _handle(step)
        before, after = _files(step.state), _files(step.after)
        changed = {i for i in after if after[i] != before.get(i)}
        return handle is not None and changed <= {handle.ino}
    return True


def handle_invariant(state: State) -> bool:
    """Every handle a guest holds is a number below its next never-used one."""
    return all(0 < fh < g.next_fh for g in state.guests for fh in g.handles)


_FH_OPS = {"READ", "WRITE", "FLUSH", "FSYNC", "RELEASE", "SETUPMAPPING"}
_DIR_FH_OPS = {"READDIR", "RELEASEDIR"}


def handle_step(step: Step) -> bool:
    """OPEN, OPENDIR and CREATE hand out the guest's next never-used number; a request
    naming a handle the guest does not hold (of that kind) fails with EBADF; RELEASE
    removes the handle."""
    result = step.result
    if step.op in ("OPEN", "OPENDIR", "CREATE") and isinstance(result, Ok):
        fh = result.value.fh if isinstance(result.value, Created) else result.value
        guest = step.state.guests[step.arg(0)]
        return fh == guest.next_fh and fh not in guest.handles
    if step.op in _FH_OPS | _DIR_FH_OPS:
        kind = HandleKind.DIR if step.op in _DIR_FH_OPS else HandleKind.FILE
        connected = step.state.guests[step.arg(0)].connected
        if connected and _handle(step, kind) is None:
            return isinstance(result, Err) and result.errno is Errno.EBADF
        if step.op in ("RELEASE", "RELEASEDIR") and isinstance(result, Ok):
            return step.arg(1) not in step.after.guests[step.arg(0)].handles
    return True


def _held(state: State) -> set[int]:
    held = {ROOT_INO}
    for g in state.guests:
        held |= {n.ino for n in g.nodes.values()} | {h.ino for h in g.handles.values()}
        held |= {m.ino for m in g.window if m is not None}
    return held


def lifetime_invariant(state: State) -> bool:
    """Every inode a guest holds exists, and every inode that exists is named or held
    (nothing leaks)."""
    held = _held(state)
    return held <= set(state.inodes) and all(
        inode.nlink > 0 or ino in held for ino, inode in state.inodes.items())


def lifetime_step(step: Step) -> bool:
    """RELEASE leaves every window alone; unlink, rmdir and rename keep every open or
    mapped inode and its data."""
    if step.op in ("RELEASE", "RELEASEDIR"):
        return all(a.window == b.window for a, b in zip(step.state.guests, step.after.guests,
                                                        strict=True))
    if step.op in ("host.unlink", "host.rename", "UNLINK", "RENAME", "RMDIR", "host.rmdir"):
        opened = {h.ino for g in step.state.guests for h in g.handles.values()}
        opened |= {m.ino for g in step.state.guests for m in g.window if m is not None}
        return all(ino in step.after.inodes
                   and step.after.inodes[ino].data == step.state.inodes[ino].data
                   for ino in opened)
    return True


def nodeid_invariant(state: State) -> bool:
    """A guest's nodeids name distinct inodes, root nodeid 1 names the root, and every
    nodeid is below the guest's next never-used one."""
    for g in state.guests:
        inos = [n.ino for n in g.nodes.values()]
        if len(set(inos)) != len(inos) or g.nodes.get(ROOT_NODEID) is None:
            return False
        if g.nodes[ROOT_NODEID].ino != ROOT_INO:
            return False
        if any(not 0 < nodeid < g.next_nodeid or n.nlookup <= 0 for nodeid, n in g.nodes.items()):
            return False
    return True


_NODEID_ARGS = {"LOOKUP": (1,), "GETATTR": (1,), "SETATTR": (1,), "READLINK": (1,),
                "SYMLINK": (1,), "MKDIR": (1,), "UNLINK": (1,), "RMDIR": (1,),
                "RENAME": (1, 3), "OPENDIR": (1,), "STATFS": (1,), "OPEN": (1,),
                "CREATE": (1,)}


def nodeid_step(step: Step) -> bool:
    """No step gives a held nodeid another inode or hands an old number out again; a
    request naming a nodeid the guest does not hold fails with ESTALE or ENOENT."""
    for before, after in zip(step.state.guests, step.after.guests, strict=True):
        for nodeid, node in after.nodes.items():
            kept = before.nodes.get(nodeid)
            if kept is not None and kept.ino != node.ino:
                return False
            if kept is None and nodeid < before.next_nodeid:
                return False  # a nodeid handed out again
    if step.op in _NODEID_ARGS and step.state.guests[step.arg(0)].connected:
        guest = step.state.guests[step.arg(0)]
        if any(step.arg(i) not in guest.nodes for i in _NODEID_ARGS[step.op]):
            return isinstance(step.result, Err) and step.result.errno in (Errno.ESTALE,
                                                                          Errno.ENOENT)
    return True


def namespace_invariant(state: State) -> bool:
    """The tree is well formed: entries name live inodes by valid names, each directory
    has one name and knows its parent, link counts count names."""
    links: dict[int, int] = {}
    for ino, inode in state.inodes.items():
        for name, target in inode.entries.items():
            if target not in state.inodes or not name or b"/" in name or name in (b".", b".."):
                return False
            links[target] = links.get(target, 0) + 1
            child = state.inodes[target]
            if child.kind is FileKind.DIR and child.parent != ino:
                return False
    root = state.inodes.get(ROOT_INO)
    if root is None or root.kind is not FileKind.DIR or ROOT_INO in links:
        return False
    return all(inode.nlink == links.get(ino, 0) for ino, inode in state.inodes.items()
               if ino != ROOT_INO) and all(
        links.get(ino, 0) <= 1 for ino, inode in state.inodes.items()
        if inode.kind is FileKind.DIR)


_NAME_ARGS = {"LOOKUP": (2,), "SYMLINK": (2,), "MKDIR": (2,), "UNLINK": (2,),
              "RMDIR": (2,), "RENAME": (2, 4), "CREATE": (2,)}


def namespace_step(step: Step) -> bool:
    """A successful namespace request used valid names, and did what it says: LOOKUP
    found the entry, MKDIR/SYMLINK/CREATE made it, UNLINK/RMDIR removed it, RENAME moved
    the source inode to the new name."""
    if step.op not in _NAME_ARGS or not isinstance(step.result, Ok):
        return True
    limit = step.state.config.name_max
    for i in _NAME_ARGS[step.op]:
        name = step.arg(i)
        if not name or b"/" in name or b"\0" in name or len(name) > limit:
            return False
        if step.op != "LOOKUP" and name in (b".", b".."):
            return False
    guest = step.state.guests[step.arg(0)]
    parent = guest.nodes[step.arg(1)].ino
    name = step.arg(2)
    before = step.state.inodes[parent].entries.get(name)
    after = step.after.inodes[parent].entries.get(name) if parent in step.after.inodes else None
    value = step.result.value
    if step.op == "LOOKUP" and name not in (b".", b".."):
        return isinstance(value, Entry) and value.attr.ino == before
    if step.op in ("MKDIR", "SYMLINK"):
        return before is None and isinstance(value, Entry) and after == value.attr.ino
    if step.op == "CREATE":
        return isinstance(value, Created) and after == value.entry.attr.ino
    if step.op in ("UNLINK", "RMDIR"):
        return before is not None and after is None
    if step.op == "RENAME":
        newparent = guest.nodes[step.arg(3)].ino
        return step.after.inodes[newparent].entries.get(step.arg(4)) == before
    return True


def _reachable(state: State) -> set[int]:
    seen, todo = {ROOT_INO}, [ROOT_INO]
    while todo:
        for target in state.inodes[todo.pop()].entries.values():
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def confine_invariant(state: State) -> bool:
    """Every inode is reachable from the export root or held by a guest: nothing outside
    the export exists for guests."""
    return set(state.inodes) <= _reachable(state) | _held(state)


def confine_step(step: Step) -> bool:
    """LOOKUP yields an entry of the directory, the directory itself or its parent (the
    root's parent is the root); OPEN never succeeds on a symlink or FIFO."""
    if step.op == "LOOKUP" and isinstance(step.result, Ok):
        guest = step.state.guests[step.arg(0)]
        parent = guest.nodes[step.arg(1)].ino
        directory = step.state.inodes[parent]
        allowed = set(directory.entries.values()) | {parent, directory.parent}
        value = step.result.value
        return (directory.kind is FileKind.DIR and isinstance(value, Entry)
                and value.attr.ino in allowed)
    if step.op == "OPEN" and isinstance(step.result, Ok):
        ino = step.state.guests[step.arg(0)].nodes[step.arg(1)].ino
        return step.state.inodes[ino].kind in (FileKind.REG, FileKind.DIR)
    return True


def single_copy(state: State) -> bool:
    """A window range holds a reference to a live host regular file, never bytes of its
    own: there is one copy of file data, the host's."""
    return all(m is None or (m.ino in state.inodes
                             and state.inodes[m.ino].kind is FileKind.REG)
               for g in state.guests for m in g.window)


def reclaim(step: Step) -> bool:
    """After DESTROY, or an INIT on a live session (a guest reset without unmount), the
    guest holds no handle, no mapping and only the root nodeid; other guests and every
    file are unchanged."""
    if step.op not in ("DESTROY", "INIT"):
        return True
    guest = step.arg(0)
    if step.op == "INIT" and not step.state.guests[guest].connected:
        return True
    gone = step.after.guests[guest]
    others = all(step.after.guests[g] == step.state.guests[g]
                 for g in range(len(step.state.guests)) if g != guest)
    return (others and not gone.handles and set(gone.nodes) == {ROOT_NODEID}
            and all(m is None for m in gone.window)
            and all(step.after.inodes[i] == n for i, n in step.state.inodes.items()
                    if i in step.after.inodes))


def durable(step: Step) -> bool:
    """After a successful FSYNC the handle's file has nothing that is not on stable
    storage."""
    if step.op != "FSYNC" or not isinstance(step.result, Ok):
        return True
    handle = _handle(step)
    return handle is not None and not step.after.inodes[handle.ino].dirty


PROPERTIES: tuple[Property, ...] = (
    Property("COH-READ", "A load through a mapping, or a READ, returns the host's current "
             "bytes, right after any host write.", step=coh_read),
    Property("COH-WRITE", "A store through a writable mapping is visible to host reads at "
             "once, without msync or fsync.", step=coh_write),
    Property("COH-PEER", "A store by one guest is visible at once to every other guest that "
             "maps that range.", step=coh_peer),
    Property("COH-META", "A guest's view of size and mtime follows host changes (at once "
             "when it asks, or after the host's invalidation notice when it caches).",
             step=coh_meta),
    Property("EOF-FAULT", "A load or store of a mapped page wholly beyond end of file faults "
             "for that access only (the guest gets EFAULT or SIGBUS, never a hang or a crash "
             "of anyone else); the tail of the last partial page reads as zero.",
             step=eof_fault),
    Property("RO-EXPORT", "In a read-only export no write path exists: writable "
             "SETUPMAPPING, WRITE, CREATE, SETATTR, UNLINK, ... fail with EROFS; host "
             "changes are still seen.", ro_export_invariant, ro_export_step),
    Property("ACCESS-MODE", "A handle opened read-only can neither WRITE nor set up a "
             "writable mapping.", step=access_mode),
    Property("OWNERSHIP", "A request acts as its caller (header uid and gid, no "
             "supplementary groups): its permission bits decide; what it makes is the "
             "caller's, in a set-gid directory's group; set-gid is inherited by "
             "directories and stripped from a file of a group not the caller's; the umask "
             "applies; a user's write or truncation clears set-uid and set-gid; no request "
             "changes an owner.", step=ownership),
    Property("ISOLATION", "A guest reads or writes only bytes of files it opened in this "
             "export; never a page that was freed (truncate, unlink) and reused for another "
             "file.", isolation_invariant, isolation_step),
    Property("HANDLE", "Handles are unique per guest; RELEASE ends one; a request with an "
             "unknown or released handle fails with EBADF; a second RELEASE fails.",
             handle_invariant, handle_step),
    Property("LIFETIME", "A mapping outlives RELEASE of the handle it was made through; an "
             "open or mapped file outlives the host's unlink of its name until the last "
             "handle and mapping go.", lifetime_invariant, lifetime_step),
    Property("NODEID", "A nodeid never comes to mean another inode (stale nodeids fail with "
             "ESTALE or ENOENT).", nodeid_invariant, nodeid_step),
    Property("NAMESPACE", "LOOKUP/CREATE/MKDIR/UNLINK/RMDIR/RENAME/READDIR follow POSIX errno "
             "rules (ENOENT, EEXIST, ENOTDIR, EISDIR, ENOTEMPTY, ENAMETOOLONG, EINVAL for "
             "names with '/' or NUL).", namespace_invariant, namespace_step),
    Property("CONFINE", "Nothing resolves outside the export: no '..' past the root, no "
             "symlink followed by the host, no device node or FIFO opened on the host's "
             "side.", confine_invariant, confine_step),
    Property("SINGLE-COPY", "Guest access to file data creates no guest-private copy: memory "
             "grows with the number of distinct file pages, not with the number of guests.",
             invariant=single_copy),
    Property("RECLAIM", "When a guest disconnects or dies, every handle, nodeid and mapping "
             "it held is released on the host, and other guests are unaffected.",
             step=reclaim),
    Property("DURABLE", "After FSYNC returns, what the guest wrote (by WRITE or by store) is "
             "on the host's stable storage.", step=durable),
)
"""Every named property of docs/DESIGN.md, in its order."""

BY_NAME: dict[str, Property] = {p.name: p for p in PROPERTIES}

Subject = TypeVar("Subject", State, Step)


def _judge(predicate: Callable[[Subject], bool], subject: Subject) -> bool:
    """A predicate's verdict; one that cannot even be evaluated (a harness passed an
    observed result of the wrong shape, say) counts as broken, never as a crash."""
    try:
        return bool(predicate(subject))
    except (AttributeError, IndexError, KeyError, TypeError, ValueError):
        return False


def violations(state: State) -> tuple[str, ...]:
    """The names of the properties whose invariant `state` breaks."""
    return tuple(p.name for p in PROPERTIES
                 if p.invariant is not None and not _judge(p.invariant, state))


def step_violations(step: Step) -> tuple[str, ...]:
    """The names of the properties whose step predicate `step` breaks. Harnesses may put
    an observed result in `step.outcome` (with the spec's next state) to ask which
    property an unexplained observation breaks."""
    return tuple(p.name for p in PROPERTIES
                 if p.step is not None and not _judge(p.step, step))


def holds(state: State) -> bool:
    """Every invariant holds in `state` (what each operation's contract assumes)."""
    return not violations(state)
