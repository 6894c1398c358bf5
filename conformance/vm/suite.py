"""`make test-vm`: every real-guest stack, judged and timed, into reports/.

    python -m pagefs.conformance.vm.suite [--out reports] [--examples 4]

1. The step list (steps.py: the exerciser with and without mmap among the steps) on
   vm:pagefs, vm:virtiofsd and vm:9p, each with its back-end's default options.
2. The conformance suite on the same three stacks (few examples per property: every
   guest request is a round trip into a TCG guest); each gets its report beside the
   matrix, and reports/matrix.md is rebuilt with them as new columns.
3. DAX under QEMU 11.1 (dax.py): coherence, two guests, memory, host truncation.

reports/vm.md gathers the three with how they were measured. Sized for about 15-20
minutes on 2 shared cores; kept out of `make test`.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

from pagefs.conformance import targets
from pagefs.conformance.cli import _slug, rebuild_matrix, write_report
from pagefs.conformance.runner import ALL, run
from pagefs.conformance.vm import dax, steps
from pagefs.conformance.vm.image import Image

STACKS = ("pagefs", "virtiofsd", "9p")


def conformance(out: str, examples: int) -> list[str]:
    lines = []
    for backend in STACKS:
        name = f"vm:{backend}"
        begun = time.monotonic()
        try:
            with targets.factory(name) as factory:
                report = run(factory, list(ALL), examples=examples, seed=0, target_name=name)
        except (OSError, RuntimeError) as exc:
            lines.append(f"- `{name}` could not start: {exc}")
            continue
        for ext in ("md", "json"):
            write_report(report, os.path.join(out, f"{_slug(name)}.{ext}"))
        failed = ", ".join(v.property for v in report.failed) or "none"
        lines.append(f"- `{name}`: {time.monotonic() - begun:.0f} s; failing: {failed} "
                     f"([report]({_slug(name)}.md))")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make test-vm", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="reports")
    parser.add_argument("--examples", type=int, default=4,
                        help="conformance examples per property and stack (default 4)")
    args = parser.parse_args(argv)
    image = Image.load()
    started = time.monotonic()
    print("step list ...", file=sys.stderr, flush=True)
    runs = [steps.run(backend) for backend in STACKS]
    print("conformance ...", file=sys.stderr, flush=True)
    judged = conformance(args.out, args.examples)
    matrix = rebuild_matrix(args.out)
    print("DAX under QEMU 11.1 ...", file=sys.stderr, flush=True)
    try:
        findings = dax.markdown(dax.experiments())
    except Exception as e:  # noqa: BLE001 (the report says what stopped it)
        findings = f"The DAX experiments did not run: {type(e).__name__}: {e}\n"
    minutes = (time.monotonic() - started) / 60
    text = "\n".join([
        "# Real Linux guests (`make test-vm`)",
        "",
        f"Guest: Debian's `linux-image-amd64` ({image.kernel_version}) and `busybox-static`, "
        "an initramfs with pagefs's agent and exerciser (`make vm`); 1 vCPU, 512 MiB, "
        "QEMU with TCG (no KVM here), memory `memory-backend-memfd,share=on`. Host: "
        f"{platform.machine()}, {os.cpu_count()} cores shared with other work. This run took "
        f"{minutes:.0f} minutes. Times are wall-clock seconds of one run each, side by side "
        "in the same run; they are not benchmarks (the load on the machine varies).",
        "",
        "## Step list, default options",
        "",
        "`python -m pagefs.conformance.vm.steps`: each step is done in the guest (busybox "
        "commands, or single syscalls through the agent where the errno matters) and checked "
        "against the host directory with the host's own syscalls (sha256 on both sides for "
        "the 8 MiB transfers). Back-ends: `pagefs-host` (default options), QEMU 7.2's "
        "C virtiofsd (`cache=auto`, no read-only option), QEMU's `-virtfs` 9p "
        "(`cache=mmap`, `readonly=on` for the read-only export).",
        "",
        steps.markdown(runs),
        "## Conformance, whole stacks",
        "",
        f"`pagefs-conformance run --target vm:BACKEND`, seed 0, {args.examples} examples per "
        "property: host operations are syscalls on the host directory, guest operations "
        "are syscalls and MAP_SHARED mmaps made in the guest by the agent. The columns are "
        "in [matrix.md](matrix.md).",
        "",
        *judged,
        "",
        matrix,
        "## DAX in a real guest (QEMU 11.1)",
        "",
        "`python -m pagefs.conformance.vm.dax`: the same guest under QEMU 11.1.3 from Debian "
        "unstable (`make qemu11`), pagefs-host `--tag pagefs --writable-map-fds` behind "
        "`vhost-user-test-device-pci,virtio-id=26,num_vqs=2,config_size=40`, mounted "
        "`-o dax=always`. Memory figures: guest `/proc/meminfo` (after `drop_caches`) and "
        "QEMU's `VmRSS` in `/proc/PID/status`, before and after `md5sum` of a 64 MiB file.",
        "",
        findings,
    ])
    with open(os.path.join(args.out, "vm.md"), "w") as f:
        f.write(text)
    print(text)
    return 0 if all(r.passed for r in runs if r.backend == "pagefs") else 1


if __name__ == "__main__":
    sys.exit(main())
