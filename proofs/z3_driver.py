"""The z3 stage of ``make verify``: every proof about the page-sharing design, one row each.

Rows, in order: each invariant holds in the initial state; one inductive proof per
(operation x invariant), generated from the two registries; the coherence theorems and
one data-refinement proof per operation; one row per seeded bug, which must be
*refuted* (z3 finds a run from the initial state that breaks the invariant; its trace
goes to stderr); and the bounded search of two guests and the host interleaving.

    python -m pagefs.proofs.z3_driver                 # the z3 rows as a table
    python -m pagefs.proofs.z3_driver --explain NAME  # a seeded bug's counterexample
    python -m pagefs.proofs.z3_driver --list          # the seeded bugs
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterable, Iterator

from pagefs.proofs import bmc, inductive, invariants, refinement, seeded_bugs, transitions
from pagefs.proofs.table import Row, render

BMC_K_QUICK = 4  # about a minute on an idle core; see proofs/README.md
BMC_K_THOROUGH = 5
PROOF_TIMEOUT_MS = 60_000


def _row(prop: str, operation: str, method: str, verdict: str, seconds: float,
         detail: str = "") -> Row:
    if not detail and verdict == "proved":  # what a proof covers: all states, symbolically
        detail = "every state of the model (z3: the negation is unsat)"
    return Row(prop, operation, method, verdict, verdict == "proved", seconds, detail)


def initial_rows() -> Iterator[Row]:
    for inv in invariants.ALL:
        out = inductive.prove_initial(inv, PROOF_TIMEOUT_MS)
        yield _row(inv.name, "initial state", "z3 inductive", out.verdict, out.seconds)


def inductive_rows() -> Iterator[Row]:
    """One proof per (operation x invariant): generated, never written out by hand."""
    for op in transitions.OPERATIONS:
        for inv in invariants.ALL:
            out = inductive.prove_step(op, inv, PROOF_TIMEOUT_MS)
            detail = ""
            if out.verdict == "counterexample":
                text = inductive.explain(out, inv, op, f"{inv.name} / {op.name}: not inductive")
                print(text, file=sys.stderr)
                detail = text.splitlines()[-1].strip()
            yield _row(inv.name, op.name, "z3 inductive", out.verdict, out.seconds, detail)


def refinement_rows() -> Iterator[Row]:
    for theorem in refinement.named(PROOF_TIMEOUT_MS):
        r = theorem()
        yield _row(r.property, r.operation, "z3 refinement", r.verdict, r.seconds)
    for op in transitions.OPERATIONS:
        r = refinement.data_refinement(op, PROOF_TIMEOUT_MS)
        yield _row("refinement", op.name, "z3 refinement", r.verdict, r.seconds)
    for op in transitions.OPERATIONS:
        if op.kind in ("request", "memory"):
            r = refinement.no_write_path(op, PROOF_TIMEOUT_MS)
            yield _row(r.property, op.name, "z3 step property", r.verdict, r.seconds)


def seeded_rows() -> Iterator[Row]:
    """A variant that z3 does not refute is a failing row: its invariant proves nothing."""
    for variant in seeded_bugs.VARIANTS:
        r = seeded_bugs.refute(variant)
        if r.trace:
            print(r.trace, file=sys.stderr)
        yield Row(variant.breaks, f"seeded bug: {variant.name}", "z3 seeded bug",
                  r.verdict, r.verdict == "refuted", r.seconds, r.summary or variant.says)


def bmc_rows(k: int) -> Iterator[Row]:
    """The interleaving search, and the same search on a seeded bug, which it must find."""
    found = bmc.coherence(k, PROOF_TIMEOUT_MS)
    verdict = {"unsat": "pass", "sat": "FAIL"}.get(found.verdict, found.verdict)
    if found.model is not None and found.run is not None:
        print(bmc.explain_coherence(found.model, found.run), file=sys.stderr)
    yield Row("COH-PEER, EOF-FAULT", "host + 2 guests", f"z3 BMC k={k}", verdict,
              verdict == "pass", found.seconds, f"{found.runs} runs of up to {k} steps")
    bug = seeded_bugs.BY_NAME["truncate-without-zap"]
    buggy = {op.name: op for op in bug.replaces}
    alphabet = [buggy.get(n, transitions.BY_NAME[n]) for n in bmc.ALPHABET]
    caught = bmc.coherence(3, PROOF_TIMEOUT_MS, alphabet)
    if caught.model is not None and caught.run is not None:
        print(f"COH-READ broken under seeded bug '{bug.name}' ({bug.says}):", file=sys.stderr)
        print(bmc.explain_coherence(caught.model, caught.run), file=sys.stderr)
    refuted = caught.verdict == "sat"
    yield Row("COH-READ", f"seeded bug: {bug.name}", "z3 BMC k=3",
              "refuted" if refuted else "not refuted", refuted, caught.seconds,
              f"found after {caught.runs} runs")


def rows(quick: bool = True) -> Iterable[Row]:
    """Every z3 row of ``make verify``."""
    yield from initial_rows()
    yield from inductive_rows()
    yield from refinement_rows()
    yield from seeded_rows()
    yield from bmc_rows(BMC_K_QUICK if quick else BMC_K_THOROUGH)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pagefs.proofs.z3_driver",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--explain", metavar="VARIANT",
                        help="print the counterexample run of one seeded bug")
    parser.add_argument("--list", action="store_true", help="list the seeded bugs")
    parser.add_argument("--thorough", action="store_true", help=f"BMC k={BMC_K_THOROUGH}")
    args = parser.parse_args(argv)
    if args.list:
        for v in seeded_bugs.VARIANTS:
            print(f"{v.name:32} {v.breaks:12} {v.says}")
        return 0
    if args.explain:
        variant = seeded_bugs.BY_NAME.get(args.explain)
        if variant is None:
            print(f"no seeded bug named {args.explain!r}; --list shows them", file=sys.stderr)
            return 2
        r = seeded_bugs.refute(variant)
        print(r.trace or f"{variant.name}: {r.verdict} after {r.seconds:.1f}s")
        return 0 if r.verdict == "refuted" else 1
    start = time.monotonic()
    table = list(rows(quick=not args.thorough))
    print(render(table))
    failed = [r for r in table if not r.ok]
    print(f"\n{len(table) - len(failed)} passed, {len(failed)} failed "
          f"in {time.monotonic() - start:.0f}s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
