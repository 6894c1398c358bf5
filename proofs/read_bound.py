"""READ-BOUND: a read through the window bounded by a probe load, not by a GETATTR.

The guest driver reads file bytes [offset, end) through its DAX window. It used to ask
the size first (a round trip per read) so that bytes past end of file, which a mapping
shows as zeros, were never returned as data. Instead (``pagefs.spec.rules.read_probe``,
``probe_bounds_read``) it loads one byte at ``probe = roundup(end, page)`` before the
copy: the host kernel answers that load from the file's size at that moment, so a probe
that does not fault proves the size is past the probe, hence past ``end``; a probe that
faults, or that lies outside the window ranges the read holds, falls back to GETATTR.

Model, in bit-vectors of the machine's width (offsets below 2**63, as loff_t): the size
``S`` at the moment of the probe, the read's ``offset`` and ``length``, the end of the
window ranges it holds (``held``: the range of its last byte ends there). The design's
read is one operation; the spec's READ at the same moment is the reference. Proved, for
every value (one row per invariant, in the op x invariant style of ``inductive``):

- LENGTH (COH-META): the read returns exactly as many bytes as READ at that moment;
- DATA (EOF-FAULT): when the probe let the read go whole, no byte it copies lies past
  end of file, so no page it touches is beyond end of file (a fault during the copy can
  only be a later host change, which the driver answers as before: GETATTR, short read);
- ASKS (the point of it): a read whose end lies one page or more before the end of file
  and one page or more before the end of its held range asks no GETATTR.

Seeded bugs, each refuted by z3: the probe at the page of the read's last byte; the
probe at the page that holds ``end`` (right only for page-aligned ends); a faulting
probe taken as end of file at the probe's page, with no GETATTR. The tie
(``tie_rows``) runs the design's read against the executable spec on every small
concrete state: a 20-byte file truncated or extended to each size, every read within a
mapped range; the probe is the spec's LOAD, the fallback its GETATTR, and the answer
must be the spec's READ byte for byte, with z3's verdict on the same values agreeing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeAlias

import z3

from pagefs.proofs.table import Row
from pagefs.spec import REGISTRY, Ok, Outcome, State, initial_state
from pagefs.spec.datatypes import O_RDONLY, Attr, Config
from pagefs.spec.rules import probe_bounds_read, read_probe

WIDTH = 64
PAGE = 4096
MAX_OFFSET = (1 << 63) - 1

BV: TypeAlias = z3.BitVecRef


def _bv(n: int) -> BV:
    return z3.BitVecVal(n, WIDTH)


def roundup(x: BV, page: int) -> BV:
    return (x + (page - 1)) & ~_bv(page - 1)


def page_start(x: BV, page: int) -> BV:
    return x & ~_bv(page - 1)


def beyond_eof(start: BV, size: BV) -> z3.BoolRef:
    """The spec's page_beyond_eof: a page starting at or after the size."""
    return z3.UGE(start, size)


def _read_length(size: BV, offset: BV, length: BV) -> BV:
    """The spec's READ at that moment: max(0, min(length, size - offset))."""
    room = z3.If(z3.UGT(size, offset), size - offset, _bv(0))
    return z3.If(z3.ULT(length, room), length, room)


def design_read(size: BV, offset: BV, length: BV, held: BV, page: int,
                probe_at: Callable[[BV, int], BV] = roundup,
                fallback_asks: bool = True) -> tuple[BV, z3.BoolRef]:
    """(bytes returned, asked GETATTR) of the driver's read. A passing probe returns the
    whole read; otherwise GETATTR gives the size and the read is bounded by it (or, in
    the seeded bug ``fallback_asks=False``, by the faulting probe's page)."""
    end = offset + length
    probe = probe_at(end, page)
    passes = z3.And(z3.ULT(probe, held), z3.Not(beyond_eof(page_start(probe, page), size)))
    faulted_at = page_start(probe, page)
    guessed = z3.If(z3.UGT(faulted_at, offset), faulted_at - offset, _bv(0))
    guessed = z3.If(z3.ULT(length, guessed), length, guessed)
    fallback = _read_length(size, offset, length) if fallback_asks else guessed
    return z3.If(passes, length, fallback), z3.And(z3.Not(passes), fallback_asks)


def _domain(size: BV, offset: BV, length: BV, held: BV, page: int) -> z3.BoolRef:
    """Offsets below 2**63 (loff_t); the read is non-empty and lies in held ranges."""
    end = offset + length
    return z3.And(z3.ULE(size, _bv(MAX_OFFSET)), z3.ULE(offset, _bv(MAX_OFFSET)),
                  z3.UGT(length, _bv(0)), z3.ULE(length, _bv(MAX_OFFSET) - offset),
                  z3.UGE(held, end), z3.ULE(held, _bv(MAX_OFFSET)),
                  held & _bv(page - 1) == 0)


@dataclass(frozen=True)
class Variant:
    name: str
    says: str
    probe_at: Callable[[BV, int], BV] = roundup
    fallback_asks: bool = True


DESIGN = Variant("design", "probe at roundup(end, page); GETATTR when it faults")
SEEDED = (
    Variant("probe-last-byte", "the probe loads the page of the read's last byte",
            probe_at=lambda end, page: page_start(end - 1, page)),
    Variant("probe-page-of-end", "the probe loads the page that holds `end`",
            probe_at=page_start),
    Variant("fault-is-eof", "a faulting probe is taken as end of file at its page",
            fallback_asks=False),
)


def invariants(size: BV, offset: BV, length: BV, held: BV, page: int,
               variant: Variant) -> dict[str, z3.BoolRef]:
    got, asked = design_read(size, offset, length, held, page, variant.probe_at,
                             variant.fallback_asks)
    end = offset + length
    whole = got == length
    return {
        "LENGTH": got == _read_length(size, offset, length),
        "DATA": z3.Implies(z3.And(whole, z3.Not(asked)),
                           z3.And(z3.ULE(end, size),
                                  z3.Not(beyond_eof(page_start(end - 1, page), size)))),
        "ASKS": z3.Implies(z3.And(z3.ULE(end + page, size), z3.ULE(end + page, held)),
                           z3.Not(asked)),
    }


def check(variant: Variant, name: str, page: int = PAGE) -> tuple[str, str]:
    """('proved', '') or ('refuted', a counterexample) for one invariant of a variant."""
    size, offset, length, held = z3.BitVecs("size offset length held", WIDTH)
    solver = z3.Solver()
    solver.set("timeout", 60_000)
    solver.add(_domain(size, offset, length, held, page))
    solver.add(z3.Not(invariants(size, offset, length, held, page, variant)[name]))
    verdict = solver.check()
    if verdict == z3.unsat:
        return "proved", ""
    if verdict == z3.sat:
        m = solver.model()
        values = {str(v): m.eval(v).as_long() for v in (size, offset, length, held)}
        return "refuted", ", ".join(f"{k}={v}" for k, v in values.items())
    return "unknown", solver.reason_unknown()


INVARIANTS = ("LENGTH", "DATA", "ASKS")
BREAKS = {"probe-last-byte": "LENGTH", "probe-page-of-end": "LENGTH",
          "fault-is-eof": "LENGTH"}


# -- the tie with the executable spec, on concrete states ---------------------------------

TIE = Config(page_size=16, range_size=32, window_ranges=2)
FILE = bytes(range(65, 85))  # 20 bytes: one full page and 4 bytes of the next


def _after(state: State, name: str, *args: object) -> Outcome:
    outcomes = REGISTRY[name](state, *args)
    return next((o for o in outcomes if isinstance(o.result, Ok)), outcomes[0])


def _start(size: int) -> State:
    """Guest 0 holds `f` (nodeid 2) open read-only (handle 1) and maps its first range at
    window offset 0; the host then sets the size (truncate or extend, zeros)."""
    state = initial_state(TIE)
    state = _after(state, "host.create", b"f", 0o644).state
    state = _after(state, "host.write", b"f", 0, FILE).state
    state = _after(state, "LOOKUP", 0, 1, b"f").state
    state = _after(state, "OPEN", 0, 2, O_RDONLY).state
    state = _after(state, "SETUPMAPPING", 0, 1, 0, TIE.range_size, False, 0).state
    return _after(state, "host.truncate", b"f", size).state


def spec_window_read(state: State, offset: int, length: int,
                     probe_at: Callable[[int, int], int] = read_probe) -> tuple[bytes, bool]:
    """The design's read, each step a spec operation: LOAD at the probe (window offset =
    file offset, range 0 maps file range 0), GETATTR if it faulted, then LOAD of the
    bytes. Returns (bytes, asked GETATTR)."""
    probe = probe_at(offset + length, TIE.page_size)
    asked = not isinstance(_after(state, "LOAD", 0, probe, 1).result, Ok)
    if asked:
        attr = _value(_after(state, "GETATTR", 0, 2))
        assert isinstance(attr, Attr)
        assert attr.size is not None
        length = max(0, min(length, attr.size - offset))
    if not length:
        return b"", asked
    data = _value(_after(state, "LOAD", 0, offset, length))
    assert isinstance(data, bytes)
    return data, asked


def _value(outcome: Outcome) -> object:
    """The value of an outcome that must succeed (the tie's set-up and reads do)."""
    assert isinstance(outcome.result, Ok), outcome.result
    return outcome.result.value


def _last_byte_page(end: int, page: int) -> int:
    """The seeded bug probe-last-byte, in plain integers."""
    return (end - 1) - (end - 1) % page


def tie_rows(quick: bool = True) -> Iterator[Row]:
    """The design's read (spec operations composed) against the spec's READ, and z3's
    terms evaluated on the same values; then the seeded bug, which the spec must catch."""
    start = time.monotonic()
    cases = 0
    problems: list[str] = []
    caught: list[str] = []
    held = _bv(TIE.range_size)
    offsets = range(0, TIE.range_size, 3 if quick else 1)
    for size in range(0, 2 * TIE.range_size + 1):
        state = _start(size)
        for offset in offsets:
            for length in range(1, TIE.range_size - offset + 1):
                cases += 1
                got, asked = spec_window_read(state, offset, length)
                read = _value(_after(state, "READ", 0, 1, offset, length))
                if got != read:
                    problems.append(f"size {size}, read {offset}+{length}: {got!r} != "
                                    f"{read!r}")
                probe = read_probe(offset + length, TIE.page_size)
                passes = probe < TIE.range_size and probe_bounds_read(probe, offset + length,
                                                                      size)
                z3_len, z3_asked = design_read(_bv(size), _bv(offset), _bv(length), held,
                                               TIE.page_size)
                if (z3.simplify(z3_len).as_long() != len(got)
                        or z3.is_true(z3.simplify(z3_asked)) != asked or passes == asked):
                    problems.append(f"size {size}, read {offset}+{length}: z3, the rule and "
                                    "the spec disagree on the length or on asking")
                if not caught:
                    bug, _ = spec_window_read(state, offset, length, _last_byte_page)
                    if bug != read:
                        caught.append(f"size {size}, read {offset}+{length}: {bug!r} != "
                                      f"{read!r}")
    yield Row("READ-BOUND", "window read = spec READ", "tie on concrete states",
              "pass" if not problems else "FAIL", not problems, time.monotonic() - start,
              problems[0] if problems else f"{cases} reads over sizes 0..{2 * TIE.range_size}")
    yield Row("READ-BOUND", "seeded bug: probe-last-byte", "tie on concrete states",
              "refuted" if caught else "not refuted", bool(caught), 0.0,
              caught[0] if caught else "the spec never told the bug from the design")


def rows(quick: bool = True) -> Iterator[Row]:
    """One row per invariant of the design (proved), one per seeded bug (refuted on the
    invariant it breaks), then the tie with the spec."""
    for name in INVARIANTS:
        start = time.monotonic()
        verdict, witness = check(DESIGN, name)
        yield Row(f"READ-BOUND {name}", "window read (probe, then copy)", "z3 bit-vectors",
                  verdict, verdict == "proved", time.monotonic() - start,
                  witness or "every size, offset, length and held range below 2**63")
    for variant in SEEDED:
        start = time.monotonic()
        name = BREAKS[variant.name]
        verdict, witness = check(variant, name)
        yield Row(f"READ-BOUND {name}", f"seeded bug: {variant.name}", "z3 bit-vectors",
                  verdict, verdict == "refuted", time.monotonic() - start,
                  f"{variant.says}: {witness}" if witness else variant.says)
    yield from tie_rows(quick)
