"""Guest requests that open and end a guest's session with the host.

A guest is served only after INIT. DESTROY ends the session, whether the guest unmounts
cleanly or its connection simply goes away (it died); an INIT on a live session (a guest
reset without unmount) ends it too before the new one starts. Each way the host releases
every handle, nodeid and mapping that guest held (RECLAIM), and other guests see no change.
"""

from __future__ import annotations

from dataclasses import replace

from pagefs.spec.datatypes import Guest, GuestId, InitInfo, Outcome, State, empty_guest
from pagefs.spec.guests import with_guest
from pagefs.spec.outcomes import lawful, ok, refuse  # noqa: F401 (contracts)


def init(state: State, guest: GuestId) -> tuple[Outcome, ...]:
    """INIT opens the session and tells the guest the page alignment its SETUPMAPPING file
    offsets need (map_alignment, log2 bytes). An INIT on a live session is a guest that was
    reset without unmounting (its new kernel greets the same connection): the old session
    ends first, exactly as by DESTROY, and the new one starts holding only the root.

    pre: 0 <= guest < len(state.guests)
    post: lawful(state, "INIT", (guest,), __return__)
    post: all(o.state.guests[guest].connected for o in __return__)
    post: not state.guests[guest].connected or not __return__[0].state.guests[guest].handles
    """
    session = state.guests[guest]
    if session.connected:
        session = _released(state, guest)
    info = InitInfo(map_alignment=state.config.map_alignment)
    return ok(with_guest(state, guest, replace(session, connected=True)), info)


def destroy(state: State, guest: GuestId) -> tuple[Outcome, ...]:
    """The guest's session ends (FUSE_DESTROY, or the connection drops). The host forgets
    all its nodeids, releases all its handles and removes all its mappings (RECLAIM); its
    counters keep running, so numbers it used are never handed out again.

    pre: 0 <= guest < len(state.guests)
    post: lawful(state, "DESTROY", (guest,), __return__)
    post: all(not o.state.guests[guest].handles for o in __return__)
    post: all(o.state.guests[:guest] == state.guests[:guest] for o in __return__)
    """
    return ok(with_guest(state, guest, _released(state, guest)))


def _released(state: State, guest: GuestId) -> Guest:
    """The guest as RECLAIM leaves it: disconnected, holding only the root, counters kept."""
    session = state.guests[guest]
    fresh = empty_guest(state.config, connected=False)
    return replace(fresh, next_nodeid=session.next_nodeid, next_fh=session.next_fh)
