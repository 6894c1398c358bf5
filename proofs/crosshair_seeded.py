"""Seeded-bug contracts: one per spec module, each false, each of which CrossHair must refute.

Each ``seeded_<module>`` is one of the module's functions with a plausible mistake put
into its result, under that function's own contract. CrossHair's verdict on the spec's
contracts means only as much as its budget: if the budget is too small to refute these,
it is too small to find bugs of the same depth in the spec, and the module's row in
``make verify`` fails. Most need a chosen member of the state family and arguments that
relate to it (a guest holding a handle, a mapped window offset, a file with data).
"""

from __future__ import annotations

from dataclasses import replace

from pagefs.spec import caching, files, guests, mappings, memory, namespace, session
from pagefs.spec import host as host_ops
from pagefs.spec.datatypes import (
    ROOT_NODEID,
    Access,
    Data,
    Errno,
    Fh,
    GuestId,
    Handle,
    HandleKind,
    Length,
    Mtime,
    NodeId,
    Offset,
    Ok,
    Outcome,
    Path,
    State,
    WindowOffset,
)
from pagefs.spec.outcomes import lawful, ok_values  # noqa: F401 (contracts)
from pagefs.spec.times import TimeMap
from pagefs.spec.tree import holds, write_data  # noqa: F401 (contracts)


def seeded_caching(mode: str) -> frozenset[str]:
    """`kept_without_dax`, but the "auto" mode claims peers stay coherent.

    post: "SINGLE-COPY" not in __return__ and "COH-PEER" not in __return__
    """
    kept = caching.kept_without_dax(mode)
    return kept | {"COH-PEER"} if mode == "auto" else kept


def seeded_rules(end: int, max_size: int) -> frozenset[Errno]:
    """`size_errors` with an off-by-one: a file exactly at the limit is refused.

    pre: max_size >= 0
    post: (not __return__) == (end <= max_size)
    """
    return frozenset() if end < max_size else frozenset({Errno.EFBIG})


def seeded_times(seen: TimeMap, ino: int, version: int, real_ns: int) -> TimeMap | None:
    """`TimeMap.observe` that forgets to record a version it saw twice over.

    pre: version >= 0
    post: __return__ is None or (ino, version) in __return__.seen
    """
    out = seen.observe(ino, Mtime(version, None), real_ns)
    if out is not None and version == 3 and real_ns > 7:
        return TimeMap()
    return out


def seeded_tree(state: State, ino: int, offset: int, data: bytes) -> State | frozenset[Errno]:
    """`write_data` that drops the last byte of a write at a non-zero offset.

    pre: ino in state.inodes and state.inodes[ino].entries is not None and offset < 64
    post: isinstance(__return__, frozenset) or holds(__return__, ino, offset, data)
    """
    return write_data(state, ino, offset, data[:-1] if offset > 0 and len(data) > 1 else data)


def seeded_guests(state: State, guest: int, ino: int) -> tuple[State, int]:
    """`open_handle` that hands out the number before the next one (which may be open).

    pre: 0 <= guest < len(state.guests) and ino in state.inodes
    post: __return__[1] not in state.guests[guest].handles
    """
    handle = Handle(ino, Access.READ, HandleKind.FILE)
    new, fh = guests.open_handle(state, guest, handle)
    return new, fh - 1 if fh > 1 else fh


def seeded_session(state: State, guest: GuestId) -> tuple[Outcome, ...]:
    """DESTROY that keeps the handles of a guest that has mapped something.

    pre: 0 <= guest < len(state.guests)
    post: all(not o.state.guests[guest].handles for o in __return__)
    """
    out = session.destroy(state, guest)
    if any(m is not None for m in state.guests[guest].window):
        return tuple(replace(o, state=state) for o in out)
    return out


def seeded_namespace(state: State, guest: GuestId, nodeid: NodeId, nlookup: int
                     ) -> tuple[Outcome, ...]:
    """FORGET that drops the root when told to forget it twice.

    pre: 0 <= guest < len(state.guests)
    post: all(ROOT_NODEID in o.state.guests[guest].nodes for o in __return__)
    """
    out = namespace.forget(state, guest, nodeid, nlookup)
    if nodeid == ROOT_NODEID and nlookup == 2:
        g = state.guests[guest]
        dropped = replace(g, nodes=g.nodes.remove(ROOT_NODEID))
        return tuple(replace(o, state=guests.with_guest(o.state, guest, dropped)) for o in out)
    return out


def seeded_files(state: State, guest: GuestId, fh: Fh, offset: Offset, length: Length
                 ) -> tuple[Outcome, ...]:
    """READ that returns one byte too many.

    pre: 0 <= guest < len(state.guests)
    post: all(len(v) <= length for v in ok_values(__return__))
    """
    out = files.read(state, guest, fh, offset, length)
    return tuple(replace(o, result=Ok(o.result.value + b"!"))
                 if isinstance(o.result, Ok) and isinstance(o.result.value, bytes) else o
                 for o in out)


def seeded_mappings(state: State, guest: GuestId, fh: Fh, foffset: Offset, length: Length,
                    writable: bool, moffset: WindowOffset) -> tuple[Outcome, ...]:
    """SETUPMAPPING that grows the window.

    pre: 0 <= guest < len(state.guests)
    post: all(len(o.state.guests[guest].window) == state.config.window_ranges for o in __return__)
    """
    out = mappings.setupmapping(state, guest, fh, foffset, length, writable, moffset)
    grown = []
    for o in out:
        g = o.state.guests[guest]
        grown.append(replace(o, state=guests.with_guest(o.state, guest, replace(
            g, window=(*g.window, None)))) if isinstance(o.result, Ok) else o)
    return tuple(grown)


def seeded_memory(state: State, guest: GuestId, woffset: WindowOffset, data: Data
                  ) -> tuple[Outcome, ...]:
    """STORE that also frees the range it stored into (a window entry lost on a store).

    pre: 0 <= guest < len(state.guests)
    post: all(o.state.guests == state.guests for o in __return__)
    """
    out = memory.store(state, guest, woffset, data)
    index = woffset // state.config.range_size
    lost = []
    for o in out:
        g = o.state.guests[guest]
        if isinstance(o.result, Ok) and data and 0 <= index < len(g.window):
            window = g.window[:index] + (None,) + g.window[index + 1:]
            o = replace(o, state=guests.with_guest(o.state, guest, replace(g, window=window)))
        lost.append(o)
    return tuple(lost)


def seeded_special(name: bytes) -> bool:
    """`guest_may_use` that forgets the dot: "userdata.x" passes for a user attribute.

    post: __return__ == (name.startswith(b"user.") and len(name) > 5)
    """
    return name.startswith(b"user") and len(name) > 5


def seeded_host(state: State, path: Path, offset: Offset, length: Length
                ) -> tuple[Outcome, ...]:
    """The host's read that uses up an inode number, answered or refused.

    CrossHair finds no path that resolves within 15 s of CPU (paths are symbolic bytes
    split on "/"), so this bug shows on any call: the host operations' contracts are
    judged by the exhaustive check (``enumeration.py``), not here.

    post: all(o.state == state for o in __return__)
    """
    out = host_ops.read(state, path, offset, length)
    return tuple(replace(o, state=replace(o.state, next_ino=o.state.next_ino + 1)) for o in out)


SEEDED = {name: f"seeded_{name}" for name in (
    "caching", "rules", "times", "tree", "guests", "session", "namespace", "files",
    "mappings", "memory", "host", "special")}
"""The seeded contract of each spec module, by the module's name."""
