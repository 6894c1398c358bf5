"""Run the unmodified programs on every stack, side by side, into a Markdown report.

    python -m pagefs.conformance.programs_report --out reports/programs.md [--scale long]
        [--long-stacks pagefs-mount,...] [--stacks pagefs-mount,virtiofsd-rust,...]
        [--programs fsx,git,...]

--long-stacks runs the listed stacks at full scale and the others short (the full scale
of every stack takes over an hour on two loaded cores). The report is rewritten after
each stack, so an interrupted run keeps what it finished.

Exit status 0 when every program held on the pagefs-mount stacks (third-party stacks
are surveyed, not required to hold), 1 otherwise, 2 for bad usage.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from collections.abc import Callable

from pagefs.conformance.programs import WORKLOADS, Outcome, Scale, run_workload
from pagefs.conformance.stacks import STACKS, mounted_stack

OURS = ("pagefs-mount", "pagefs-mount-relay")


def run_all(stacks: list[str], programs: list[str], scales: dict[str, Scale],
            done: Callable[[dict[str, dict[str, Outcome]]], None] = lambda _: None,
            ) -> dict[str, dict[str, Outcome]]:
    """stack -> program -> outcome; a stack that cannot start fails every program.
    `done` is called with the results so far after each stack."""
    results: dict[str, dict[str, Outcome]] = {}
    for stack in stacks:
        scale = scales[stack]
        results[stack] = {}
        print(f"{stack}: mounting", file=sys.stderr)
        try:
            with tempfile.TemporaryDirectory(prefix="pagefs-programs.") as work, \
                    mounted_stack(stack, work) as path:
                for program in programs:
                    outcome = run_workload(program, path, scale)
                    results[stack][program] = outcome
                    print(f"{stack}: {program}: {'held' if outcome.held else 'FAILED'} "
                          f"({outcome.seconds:.1f} s) {outcome.detail}", file=sys.stderr)
        except (OSError, RuntimeError) as e:
            for program in programs:
                results[stack].setdefault(program, Outcome(False, 0.0, f"stack: {e}"))
        done(results)
    return results


def markdown(results: dict[str, dict[str, Outcome]], programs: list[str],
             scales: dict[str, Scale]) -> str:
    stacks = list(results)
    long = [s for s in stacks if scales[s] is Scale.LONG]
    scale_text = ("full scale on " + ", ".join(f"`{s}`" for s in long) + ", short elsewhere"
                  if long and len(long) < len(stacks) else
                  f"{scales[stacks[0]].value} scale" if stacks else "")
    lines = [
        "# Unmodified programs on mounted shares",
        "",
        f"`make programs` ({scale_text}), {time.strftime('%Y-%m-%d', time.gmtime())}, "
        f"kernel {platform.release()}. Each program runs in a fresh directory on the "
        "mount and is judged by its own checks (exit status, sqlite's integrity_check, "
        "git fsck, tar --compare and a byte-for-byte round trip, byte code imported and "
        "not stale); seconds are wall time on a 2-core machine shared with other work. "
        "Full scale: the exerciser at 100,000 ops, sqlite 20,000 rows, git 2,000 files, tar "
        "3,000 files, compileall of four stdlib packages; short: 5,000 ops, 2,000 rows, "
        "200 files, 300 files, one package.",
        "",
        "Stacks:",
        "",
        *[f"- `{s}`: {STACKS[s][0]}" for s in stacks],
        "",
        "| program | " + " | ".join(f"`{s}`" for s in stacks) + " |",
        "|---|" + "---|" * len(stacks),
    ]
    for program in programs:
        cells = []
        for stack in stacks:
            o = results[stack][program]
            cells.append(f"held, {o.seconds:.1f} s" if o.held else "**FAIL**")
        lines.append(f"| {program} | " + " | ".join(cells) + " |")
    lines += ["", "What each run did, or where it failed:", ""]
    for stack in stacks:
        for program in programs:
            o = results[stack][program]
            verdict = "held" if o.held else "FAILED"
            lines.append(f"- `{stack}` {program}: {verdict}: {o.detail}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pagefs.conformance.programs_report")
    parser.add_argument("--out", required=True, help="the Markdown report to write")
    parser.add_argument("--scale", choices=[s.value for s in Scale], default="long")
    parser.add_argument("--long-stacks", default=None,
                        help="stacks run at full scale, the others short (default: --scale)")
    parser.add_argument("--stacks", default=",".join(STACKS))
    parser.add_argument("--programs", default=",".join(WORKLOADS))
    args = parser.parse_args(argv)
    stacks = [s for s in args.stacks.split(",") if s]
    programs = [p for p in args.programs.split(",") if p]
    unknown = [s for s in stacks if s not in STACKS] + [p for p in programs if p not in WORKLOADS]
    if unknown:
        print(f"programs_report: unknown stack or program {unknown[0]!r}", file=sys.stderr)
        return 2
    if args.long_stacks is None:
        scales = dict.fromkeys(stacks, Scale(args.scale))
    else:
        long = set(args.long_stacks.split(","))
        scales = {s: Scale.LONG if s in long else Scale.SHORT for s in stacks}

    def write(results: dict[str, dict[str, Outcome]]) -> None:
        with open(args.out, "w") as f:
            f.write(markdown(results, programs, scales))

    results = run_all(stacks, programs, scales, write)
    ours = [o for s in stacks if s in OURS for o in results[s].values()]
    return 0 if all(o.held for o in ours) else 1


if __name__ == "__main__":
    sys.exit(main())
