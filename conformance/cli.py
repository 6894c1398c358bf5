"""pagefs-conformance: judge a host-guest file sharing stack against the pagefs spec.

    pagefs-conformance run --target T [--properties P,...] [--examples N] [--seed S | --seeds A-B]
                           [--report FILE.md|FILE.json ...] [--inject FAULT]
    pagefs-conformance matrix --out DIR [--targets T,...] [--examples N] [--seeds S,...]
    pagefs-conformance vectors --out DIR [--cases N] [--seed S]
    pagefs-conformance replay DIR --target T [--report FILE.json]
    pagefs-conformance concurrent [--targets T,...] [--rounds N] [--demo] [--report FILE.md]
    pagefs-conformance targets

Targets: local, mount:HOSTDIR:GUESTDIR[:GUESTDIR2], bindfs, pagefs,
virtiofsd[:cache=none|auto|always], virtiofsd-rust[:cache=never|auto|always|metadata]
(`make virtiofsd-rust` installs it), pagefs-mount[:relay]. Exit status: 0 when nothing
failed, 1 on any failure, 2 for bad usage.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import NoReturn

from pagefs.conformance import concurrent, targets, vectors
from pagefs.conformance.faults import FAULTS, inject
from pagefs.conformance.report import Report, combine, matrix_markdown, seeds_markdown
from pagefs.conformance.runner import ALL, run

MATRIX = ("pagefs", "pagefs:python", "pagefs-api", "local", "bindfs", "virtiofsd:cache=none",
          "virtiofsd:cache=auto",
          "virtiofsd:cache=always", "pagefs-mount", "pagefs-mount:relay",
          "virtiofsd-rust:cache=never", "virtiofsd-rust:cache=auto",
          "virtiofsd-rust:cache=always", "virtiofsd-rust:cache=metadata")
# Targets that judge fewer examples per property than asked, to keep `make conformance`
# within reach: the Rust virtiofsd's departures make hypothesis shrink at length (a
# daemon per case), ten times as long per example as the C one's.
EXAMPLES_CAP = {"virtiofsd-rust": 10, "vm": 4}
# Columns another make target judges (make test-vm: real guests under TCG) are kept from
# their JSON reports beside the matrix, so a matrix run does not drop them.
KEPT = ("vm:pagefs", "vm:virtiofsd", "vm:9p")


def examples_for(target: str, asked: int) -> int:
    return min(asked, EXAMPLES_CAP.get(target.partition(":")[0], asked))


def _properties(text: str | None) -> list[str]:
    if not text:
        return list(ALL)
    props = [p.strip().upper() for p in text.split(",") if p.strip()]
    unknown = [p for p in props if p not in ALL]
    if unknown:
        raise ValueError(f"unknown properties {', '.join(unknown)}; known: {', '.join(ALL)}")
    return props


def write_report(report: Report, path: str) -> None:
    """FILE.json gets JSON, anything else Markdown."""
    text = report.to_json() if path.endswith(".json") else report.to_markdown()
    with open(path, "w") as f:
        f.write(text)


def _seed_list(text: str | None, default: int) -> list[int]:
    """'0,1,2' or '0-19' (both ends included); none given: the one default seed."""
    if not text:
        return [default]
    seeds: list[int] = []
    for part in text.split(","):
        low, dash, high = part.strip().partition("-")
        seeds += list(range(int(low), int(high) + 1)) if dash else [int(low)]
    return seeds


def _run(args: argparse.Namespace) -> int:
    seeds = _seed_list(args.seeds, args.seed)
    reports = []
    with targets.factory(args.target) as real:
        factory = inject(real, args.inject) if args.inject else real
        for seed in seeds:
            report = run(factory, _properties(args.properties), examples=args.examples,
                         steps=args.steps, seed=seed, target_name=factory.name,
                         shrink_seconds=args.shrink_seconds)
            reports.append(report)
            if len(seeds) > 1:
                print(f"seed {seed}:")
            print(report.table())
            for v in report.verdicts:
                if v.trace:
                    print(f"\n{v.property} fails; shortest trace found:")
                    print("\n".join(v.trace))
    combined = combine(reports)
    for path in args.report or ():
        if len(seeds) > 1 and not path.endswith(".json"):
            with open(path, "w") as f:
                f.write(seeds_markdown(reports))  # seed by seed, each with its judged steps
        else:
            write_report(combined, path)
    return 1 if any(r.failed for r in reports) else 0


def write_matrix(out: str, reports: list[Report], properties: list[str], seeds: list[int],
                 examples: int) -> str:
    """DIR/matrix.md: the table, what n/a means, and where each failure departs."""
    table = matrix_markdown(reports, properties)
    named = ", ".join(str(s) for s in seeds)
    with open(os.path.join(out, "matrix.md"), "w") as f:
        f.write(f"# Conformance matrix\n\nSeeds {named}; up to {examples} examples per property, "
                "target and seed (`make conformance`); a cell is the worst verdict over the "
                "seeds, with the steps that judged the property (summed over the seeds) in "
                "parentheses. One report per target beside this file, with every failure's "
                "shortest trace. inconclusive: applicable, but cases were cut short by "
                "another property's departure (or nothing judged it), so it is not a pass. "
                "n/a: the target cannot exercise the property (the report says why); it is "
                "not a pass either.")
        capped = sorted({n.partition(":")[0] for n in (r.target for r in reports)
                         if examples_for(n, examples) < examples})
        for family in capped:
            f.write(f" `{family}` columns: up to {examples_for(family, examples)} examples "
                    "per property (`EXAMPLES_CAP` in conformance/cli.py).")
        f.write("\n\n")
        f.write(table)
    return table


def _saved(out: str, names: Sequence[str]) -> list[Report]:
    """The reports of `names` that an earlier run left as DIR/<slug>.json, in that order."""
    found = []
    for name in names:
        path = os.path.join(out, f"{_slug(name)}.json")
        if os.path.exists(path):
            with open(path) as f:
                found.append(Report.from_json(f.read()))
    return found


def rebuild_matrix(out: str) -> str:
    """DIR/matrix.md again from the JSON reports beside it: the matrix's own columns as
    `make conformance` left them, then the kept ones (after `make test-vm` adds its)."""
    reports = _saved(out, MATRIX)
    if not reports:
        raise OSError(f"no conformance reports in {out}: run `make conformance` first")
    return write_matrix(out, reports + _saved(out, KEPT), list(ALL), reports[0].seeds,
                        max(r.examples for r in reports))


def _slug(name: str) -> str:
    return name.replace(":", "-").replace("=", "-").replace("/", "_")


def _matrix(args: argparse.Namespace) -> int:
    os.makedirs(args.out, exist_ok=True)
    names = [t.strip() for t in args.targets.split(",")] if args.targets else list(MATRIX)
    seeds = _seed_list(args.seeds, args.seed)
    reports = []
    kept = _saved(args.out, [k for k in KEPT if k not in names])
    for name in names:
        try:
            with targets.factory(name) as factory:
                report = combine([
                    run(factory, _properties(args.properties),
                        examples=examples_for(name, args.examples),
                        steps=args.steps, seed=seed, target_name=name,
                        shrink_seconds=args.shrink_seconds) for seed in seeds])
        except (OSError, RuntimeError) as exc:
            print(f"{name}: cannot start: {exc}", file=sys.stderr)
            continue
        reports.append(report)
        for ext in ("md", "json"):
            write_report(report, os.path.join(args.out, f"{_slug(name)}.{ext}"))
        # What finished so far stands on its own if a long matrix is stopped.
        write_matrix(args.out, reports + kept, _properties(args.properties), seeds,
                     args.examples)
    table = write_matrix(args.out, reports + kept, _properties(args.properties), seeds,
                         args.examples)
    print(table)
    # The matrix is a survey: third-party targets are expected to fail some properties.
    pagefs = [r for r in reports if r.target == "pagefs"]
    return 1 if len(reports) < len(names) or any(r.failed for r in pagefs) else 0


def _vectors(args: argparse.Namespace) -> int:
    written = vectors.generate(args.out, cases=args.cases, seed=args.seed, steps=args.steps)
    print(f"wrote {written} vectors to {args.out}")
    return 0


def _replay(args: argparse.Namespace) -> int:
    with targets.factory(args.target) as factory:
        result = vectors.replay(args.dir, factory, target_name=args.target)
    print(result.summary())
    if args.report:
        with open(args.report, "w") as f:
            f.write(result.to_json())
    return 0 if result.ok else 1


class _Parser(argparse.ArgumentParser):
    """Bad usage is one line on stderr and status 2 (argparse would add its usage)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"pagefs-conformance: {message}\n")


def _at_least(lowest: int) -> Callable[[str], int]:
    def number(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < lowest:
            raise argparse.ArgumentTypeError(f"{value} is below {lowest}")
        return value
    number.__name__ = f"whole number >= {lowest}"
    return number


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text} is not a positive number of seconds")
    return value


def _writable(path: str) -> str:
    """A report path whose directory exists and is writable: checked before the run, so
    a typo does not cost the whole run."""
    folder = os.path.dirname(path) or "."
    if not os.path.isdir(folder):
        raise argparse.ArgumentTypeError(f"{path}: directory {folder} does not exist")
    if os.path.isdir(path):
        raise argparse.ArgumentTypeError(f"{path} is a directory")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"{path}: directory {folder} is not writable")
    return path


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="pagefs-conformance", description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n".join(__doc__.splitlines()[2:]))
    sub = p.add_subparsers(dest="command", required=True)

    def budget(q: argparse.ArgumentParser, examples: int) -> None:
        q.add_argument("--properties", help="comma-separated names (default: all)")
        q.add_argument("--examples", type=_at_least(1), default=examples,
                       help=f"test cases per property (default {examples})")
        q.add_argument("--steps", type=_at_least(1), default=25, help="steps per test case")
        q.add_argument("--seed", type=int, default=0, help="same seed, same run")
        q.add_argument("--shrink-seconds", type=_seconds, default=60.0,
                       help="time allowed to shrink one failure (default 60)")

    r = sub.add_parser("run", help="judge one target")
    r.add_argument("--target", required=True)
    budget(r, 50)
    r.add_argument("--seeds", help="several seeds, '0,1,2' or '0-19': a .md report then "
                                   "shows each seed's verdicts")
    r.add_argument("--report", action="append", type=_writable,
                   help="write FILE.md or FILE.json (repeatable)")
    r.add_argument("--inject", choices=FAULTS,
                   help="break the target in one way first, to watch the suite catch it")
    m = sub.add_parser("matrix", help="judge the shipped targets; reports in DIR")
    m.add_argument("--out", required=True)
    m.add_argument("--targets", help=f"comma-separated (default {','.join(MATRIX)})")
    m.add_argument("--seeds", help="seeds run in turn, '0,1,2' or '0-2' (default: --seed)")
    budget(m, 50)
    v = sub.add_parser("vectors", help="write spec-generated vectors (JSON) to DIR")
    v.add_argument("--out", required=True)
    v.add_argument("--cases", type=_at_least(1), default=vectors.CASES,
                   help="cases per property family")
    v.add_argument("--seed", type=int, default=vectors.SEED)
    v.add_argument("--steps", type=_at_least(1), default=vectors.STEPS)
    y = sub.add_parser("replay", help="run vectors from DIR against a target")
    y.add_argument("dir")
    y.add_argument("--target", required=True)
    y.add_argument("--report", type=_writable, help="write the per-vector results as JSON")
    c = sub.add_parser("concurrent", help="host and guests at once; histories checked for "
                                          "linearizability against the spec")
    c.add_argument("--targets", default="pagefs,virtiofsd:cache=auto",
                   help="comma-separated (default pagefs,virtiofsd:cache=auto)")
    c.add_argument("--rounds", type=_at_least(1), default=20, help="rounds per target")
    c.add_argument("--ops", type=_at_least(1), default=8, help="operations per worker")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--demo", action="store_true",
                   help="also run the first target with torn guest writes (must fail)")
    c.add_argument("--report", type=_writable, help="write the Markdown report to FILE")
    sub.add_parser("targets", help="list the target kinds")
    return p


def _concurrent(args: argparse.Namespace) -> int:
    results = []
    names = [t.strip() for t in args.targets.split(",") if t.strip()]
    for i, name in enumerate(names):
        with targets.factory(name) as factory:
            chosen = [factory, *([concurrent.torn_writes(factory)] if args.demo and i == 0
                                 else [])]
            for each in chosen:
                result = concurrent.check(each, rounds=args.rounds, ops_per_worker=args.ops,
                                          seed=args.seed)
                print(f"{result.target}: {len(result.rounds)} rounds, "
                      f"{len(result.violations)} not linearizable, "
                      f"{len(result.inconclusive)} inconclusive", file=sys.stderr)
                results.append(result)
    text = concurrent.to_markdown(results, seed=args.seed, ops_per_worker=args.ops)
    print(text)
    if args.report:
        with open(args.report, "w") as out:
            out.write(text)
    demo = [r for r in results if r.target.endswith("+torn-writes")]
    honest = [r for r in results if r not in demo]
    return 1 if any(r.violations or r.inconclusive for r in honest) or \
        any(not r.violations for r in demo) else 0


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, so it unwinds as Ctrl-C does: every target,
    mount, daemon and temporary directory is closed by its own `with` or `finally`."""


def _terminate(signum: int, frame: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second one ends it, as Ctrl-C twice
    raise Terminated


@contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set handlers; its caller owns the signals
        return
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = parser().parse_args(argv)
    except SystemExit as exc:  # bad usage (one line already printed), or --help
        return exc.code if isinstance(exc.code, int) else 2
    try:
        with _sigterm_unwinds():
            return _command(args)
    except Terminated:
        print("pagefs-conformance: terminated (SIGTERM); targets stopped and cleaned up",
              file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print("pagefs-conformance: interrupted; targets stopped and cleaned up",
              file=sys.stderr)
        return 128 + signal.SIGINT


def _command(args: argparse.Namespace) -> int:
    try:
        if args.command == "targets":
            print("\n".join(targets.names()))
            return 0
        return {"run": _run, "matrix": _matrix, "vectors": _vectors, "replay": _replay,
                "concurrent": _concurrent}[args.command](args)
    except ValueError as exc:  # bad target string, property name, ...
        print(f"pagefs-conformance: {exc}", file=sys.stderr)
        return 2
    except (OSError, RuntimeError) as exc:  # a target that cannot start
        print(f"pagefs-conformance: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
