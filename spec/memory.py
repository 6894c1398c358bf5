"""Guest memory: LOAD and STORE on the DAX window. Not requests, just memory accesses.

An access resolves, page by page, to the host's page that backs it now: the range's
inode and file offset, read through the host's current bytes. So a load sees every host
write at once (COH-READ), a store is at once the host's data (COH-WRITE) and every other
guest's that maps the page (COH-PEER). An access faults, for that access only, when it
touches a free range, a page wholly beyond end of file (EOF-FAULT), or, for a store, a
read-only range. The tail of the last page past end of file reads as zeros unless a
guest stored there; such stores never become file data, and when the host evicts the
page they are gone, so a load may see them or zeros.

Every other rule here is a step on its own. Accesses run concurrently with each other
and with the host, so the spec also says what a racing access may see (the memory
model, `racing_load`): atomicity is per byte, a single guest sees its own accesses in
program order, and a truncate racing an access is seen either whole or not at all,
page by page, never as another file's bytes and never as a hang. The z3 model of a
truncate in its real sub-steps against an access in flight (`proofs/concurrency.py`)
proves the design keeps it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from pagefs.spec.datatypes import Data, GuestId, Length, Outcome, State, WindowOffset
from pagefs.spec.outcomes import either, fault, lawful, ok, ok_values  # noqa: F401 (contracts)
from pagefs.spec.rules import page_beyond_eof, page_start, tail_length
from pagefs.spec.tree import bump, put


@dataclass(frozen=True)
class Piece:
    """The part of an access that falls in one page: `length` bytes of inode `ino` from
    file offset `foffset`, which are bytes [at, at + length) of the access."""

    ino: int
    foffset: int
    length: int
    at: int


def resolve(state: State, guest: int, woffset: int, length: int,
            store: bool) -> tuple[tuple[Piece, ...], bool]:
    """Split an access into pages and resolve each to the host page behind it now. Returns
    the pieces up to the first page that faults, and whether one did.

    pre: 0 <= guest < len(state.guests) and length >= 0
    post: sum(p.length for p in __return__[0]) == length or __return__[1]
    post: all(0 < p.length <= state.config.page_size for p in __return__[0])
    """
    config = state.config
    pieces: list[Piece] = []
    at = 0
    while at < length:
        where = woffset + at
        if where < 0 or where >= config.window_size:
            return tuple(pieces), True
        mapped = state.guests[guest].window[where // config.range_size]
        if mapped is None or (store and not mapped.writable):
            return tuple(pieces), True
        foffset = mapped.foffset + where % config.range_size
        inode = state.inodes[mapped.ino]
        if page_beyond_eof(page_start(foffset, config.page_size), inode.size):
            return tuple(pieces), True
        take = min(length - at, config.page_size - foffset % config.page_size)
        pieces.append(Piece(mapped.ino, foffset, take, at))
        at += take
    return tuple(pieces), False


def page_bytes(state: State, ino: int, foffset: int, length: int, evicted: bool) -> bytes:
    """The bytes a mapping shows at a file offset inside a page that is not beyond end of
    file: file data, then the stored tail (or zeros, once `evicted`)."""
    inode = state.inodes[ino]
    data = inode.data[foffset:foffset + length]
    missing = length - len(data)
    if not missing:
        return data
    tail = b"" if evicted else inode.tail
    start = max(0, foffset - inode.size)
    shown = tail[start:start + missing]
    return data + shown + bytes(missing - len(shown))


def _without_tails(state: State, inos: set[int]) -> State:
    for ino in inos:
        state = put(state, ino, replace(state.inodes[ino], tail=b""))
    return state


def load(state: State, guest: GuestId, woffset: WindowOffset,
         length: Length) -> tuple[Outcome, ...]:
    """LOAD reads `length` bytes of the window at `woffset`: the host's current bytes of
    the mapped files (COH-READ), or FAULT (EOF-FAULT). When the access covers a tail a
    guest stored into, seeing those bytes and seeing zeros (the page was evicted) are
    both allowed.

    pre: 0 <= guest < len(state.guests)
    post: lawful(state, "LOAD", (guest, woffset, length), __return__)
    post: all(len(v) == max(length, 0) for v in ok_values(__return__))
    """
    pieces, faulted = resolve(state, guest, woffset, max(length, 0), store=False)
    if faulted or length < 0:
        return fault(state)
    seen = b"".join(page_bytes(state, p.ino, p.foffset, p.length, False) for p in pieces)
    zeros = b"".join(page_bytes(state, p.ino, p.foffset, p.length, True) for p in pieces)
    if seen == zeros:
        return ok(state, seen)
    evicted = _without_tails(state, {p.ino for p in pieces if state.inodes[p.ino].tail})
    return either(ok(state, seen), ok(evicted, zeros))


def _store_piece(state: State, piece: Piece, data: bytes) -> State:
    """Store one page's piece: bytes before end of file become file data, bytes past it
    go to the page's tail. Either way the file has a new mtime version and is dirty."""
    inode = state.inodes[piece.ino]
    size = inode.size
    chunk = data[piece.at:piece.at + piece.length]
    inside = chunk[:max(0, size - piece.foffset)]
    body = inode.data[:piece.foffset] + inside + inode.data[piece.foffset + len(inside):]
    outside = chunk[len(inside):]
    tail = inode.tail
    if outside:
        room = tail_length(size, state.config.page_size)
        tail = tail + bytes(room - len(tail))
        start = piece.foffset + len(inside) - size
        tail = tail[:start] + outside + tail[start + len(outside):]
    return put(state, piece.ino, replace(bump(inode), data=body, tail=tail, dirty=True))


def store(state: State, guest: GuestId, woffset: WindowOffset, data: Data) -> tuple[Outcome, ...]:
    """STORE writes `data` into the window at `woffset`, straight into the host's pages:
    the host and every guest mapping them see it at once, with no msync or fsync
    (COH-WRITE, COH-PEER); it never extends the file. When a page of the access faults,
    either nothing was stored or every page before the faulting one was: a guest copies
    page by page and stops at the fault.

    pre: 0 <= guest < len(state.guests)
    post: lawful(state, "STORE", (guest, woffset, data), __return__)
    post: all(o.state.guests == state.guests for o in __return__)
    """
    pieces, faulted = resolve(state, guest, woffset, len(data), store=True)
    stored = state
    for piece in pieces:
        stored = _store_piece(stored, piece, data)
    if not faulted:
        return ok(stored)
    return either(fault(state), fault(stored))


def racing_load(before: bytes, after: bytes | None, observed: bytes | None) -> bool:
    """What a LOAD may return when one change of the same bytes races it: a STORE or
    WRITE by anyone, or a truncate by the host (the memory model).

    - Per-byte atomicity: each byte of the result is that byte as it was before the
      change or as it is after, independently of the others. A multi-byte load racing a
      store may be torn between old and new bytes; no wider unit (word, page) is
      promised, as a guest's vCPU may split the access and the host may too.
    - A change that leaves a page of the range wholly beyond end of file (`after` is
      None: the truncate zapped it) may make the load fault (`observed` None), or the
      load may have completed before it (the old bytes); never a hang, never bytes of
      another file (ISOLATION).
    - Single-guest order: a guest's own accesses take effect in its program order, so a
      load after its own store with nothing racing returns the stored bytes (the
      sequential rules of LOAD and STORE above); across guests there is no order but
      the host's.

    pre: after is None or len(after) == len(before)
    post: not __return__ or observed is not None or after is None
    post: observed != before or __return__
    """
    if observed is None:
        return after is None
    if len(observed) != len(before):
        return False
    if after is None:
        return observed == before
    return all(o in (b, a) for o, b, a in zip(observed, before, after, strict=True))
