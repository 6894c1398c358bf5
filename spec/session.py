"""Guest requests that open and end a guest's session with the host.

A guest is served only after INIT. DESTROY ends the session, whether the guest unmounts
cleanly or its connection simply goes away (it died): either way the host releases every
handle, nodeid and mapping that guest held (RECLAIM), and other guests see no change.
"""

from __future__ import annotations

from dataclasses import replace

from pagefs.spec.datatypes import Errno, GuestId, InitInfo, Outcome, State, empty_guest
from pagefs.spec.guests import with_guest
from pagefs.spec.outcomes import lawful, ok, refuse  # noqa: F401 (contracts)


def init(state: State, guest: GuestId) -> tuple[Outcome, ...]:
    """INIT opens the session and tells the guest the page alignment its SETUPMAPPING file
    offsets need (map_alignment, log2 bytes). A second INIT on a live session is a
    protocol error (EPROTO, or EIO from servers that treat it as any early request).

    pre: 0 <= guest < len(state.guests)
    post: lawful(state, "INIT", (guest,), __return__)
    post: all(o.state.guests[guest].connected for o in __return__)
    """
    session = state.guests[guest]
    if session.connected:
        return refuse(state, {Errno.EPROTO, Errno.EIO})
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
    session = state.guests[guest]
    fresh = empty_guest(state.config, connected=False)
    fresh = replace(fresh, next_nodeid=session.next_nodeid, next_fh=session.next_fh)
    return ok(with_guest(state, guest, fresh))
