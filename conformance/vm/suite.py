"""`make test-vm`: every real-guest stack, judged and timed, into reports/.

    python -m pagefs.conformance.vm.suite [--out reports] [--examples 12]

1. The step list (steps.py: the exerciser with and without mmap among the steps) on
   vm:pagefs, vm:virtiofsd and vm:9p, each with its back-end's default options.
2. The conformance suite on the same three stacks (few examples per property: every
   guest request is a round trip into a TCG guest); each gets its report beside the
   matrix, and reports/matrix.md is rebuilt with them as new columns.
3. DAX under QEMU 11.1 (dax.py): coherence, two guests, memory, the exerciser, host
   truncation.

reports/vm.md gathers the three with how they were measured. Sized for about 15
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
    """Each vm:* stack judged, its report written beside the matrix; the lines that say
    how each went, then a table of the vm:* verdicts (the matrix has them as columns)."""
    lines, verdicts = [], {}
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
        verdicts[name] = {v.property: v.result for v in report.verdicts}
    if verdicts:
        lines += ["", "| property | " + " | ".join(f"`{n}`" for n in verdicts) + " |",
                  "|---" * (len(verdicts) + 1) + "|"]
        lines += [f"| {prop} | " + " | ".join(v.get(prop, "-") for v in verdicts.values())
                  + " |" for prop in ALL]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make test-vm", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="reports")
    parser.add_argument("--examples", type=int, default=12,
                        help="conformance examples per property and stack (default 12)")
    args = parser.parse_args(argv)
    image = Image.load()
    started = time.monotonic()
    print("step list ...", file=sys.stderr, flush=True)
    runs = [steps.run(backend) for backend in STACKS]
    print("conformance ...", file=sys.stderr, flush=True)
    judged = conformance(args.out, args.examples)
    rebuild_matrix(args.out)
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
        "QEMU with TCG (this machine has /dev/kvm, but a guest booted with `-accel kvm` "
        "stalled after SeaBIOS), memory `memory-backend-memfd,share=on`. Host: "
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
        "in [matrix.md](matrix.md). Without DAX every stack here is a caching guest "
        "kernel: a guest's MAP_SHARED mapping is its own page cache, which sees a host "
        "write only once the guest invalidates (its next read(), stat or open), sends its "
        "stores to the host at writeback, and may fault or read zeros past an end of file "
        "it has not yet seen move (pagefs-host's `--cache auto`, documented in its help; "
        "virtiofsd's `cache=auto` and 9p's `cache=mmap` likewise). The coherence "
        "properties (COH-READ, COH-WRITE, EOF-FAULT and LIFETIME, whose cases map) state "
        "the DAX contract, so they depart on these stacks; the DAX section below shows that "
        "contract held by a real guest.",
        "",
        *judged,
        "",
        "## DAX in a real guest (QEMU 11.1)",
        "",
        "`python -m pagefs.conformance.vm.dax`: the same guest under QEMU 11.1.3 from Debian "
        "unstable (`make qemu11`), pagefs-host `--tag pagefs --writable-map-fds` behind "
        "`vhost-user-test-device-pci,virtio-id=26,num_vqs=2,config_size=40`, mounted "
        "`-o dax=always`. Memory figures, before and after `sha256sum` of a 64 MiB file the "
        "guest's agent holds open: the guest's `/proc/meminfo` (after `drop_caches`), QEMU's "
        "`RssShmem` (guest RAM, the memfd) and `RssFile` (mapped files) in "
        "`/proc/PID/status`, the resident size of QEMU's mappings of the file "
        "(`/proc/PID/smaps`), and how much of the file the host's page cache holds "
        "(`mincore`).",
        "",
        findings,
        "**A host truncation under a guest's mapping is not contained.** The guest's next "
        "access to a vanished page is a SIGBUS in QEMU's own process (QEMU reads the window "
        "through its mapping of the host file), so the whole VM dies; pagefs-host survives. "
        "From the back-end's side: a lease would make the truncating process wait while "
        "pagefs-host takes the ranges out of the window, but Linux grants no read lease "
        "while any writable open exists, and QEMU 11.1 maps every donated descriptor "
        "read-write (EAGAIN above). Watching mapped files (inotify or fanotify) and "
        "answering a shrink with SHMEM_UNMAP only narrows the race: the notice comes after "
        "the truncation, and a guest touching the page first still kills QEMU; nor will "
        "QEMU 11.1 map again the part of a 2 MiB range that now crosses the file's end "
        "(the same size check as above). Containing it needs the VMM (answering a SIGBUS "
        "in its window) or the host kernel (holding a truncation of a mapped file).",
        "",
    ])
    with open(os.path.join(args.out, "vm.md"), "w") as f:
        f.write(text)
    print(text)
    return 0 if all(r.passed for r in runs if r.backend == "pagefs") else 1


if __name__ == "__main__":
    sys.exit(main())
