"""Run the attack list against pagefs-host and QEMU's virtiofsd and print the table
(reports/security.md):

    .venv/bin/python tests/security/report.py [--old OLD.xml --now NOW.xml] > reports/security.md

With --old and --now (JUnit XML of tests/security/test_defects.py, test_credentials.py and
test_sandbox.py run on an old main by scripts/security-on-old-main, and on this tree), it
adds the regression tests' table: each test's result there and here."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from tests.security.attacks import ATTACKS, BACKENDS, run_attack, scene_of  # noqa: E402


def junit(path: str) -> dict[str, str]:
    """test name -> "pass", or "FAIL: <the first line of why>"."""
    out = {}
    for case in ET.parse(path).iter("testcase"):
        failed = next((case.find(tag) for tag in ("failure", "error")
                       if case.find(tag) is not None), None)
        file = case.get("classname", "").rpartition(".")[2]
        if failed is None:
            out[f"{file}::{case.get('name')}"] = "pass"
            continue
        why = (failed.get("message") or "").splitlines()[0] if failed.get("message") else ""
        why = why.replace("|", "/")[:110]
        out[f"{file}::{case.get('name')}"] = f"FAIL: {why}"
    return out


# Tests of what came after the defects (the chroot sandbox, the default's fallback): no
# defect of bbad515 for them to regress, so left out of the table.
LATER_FEATURES = ("test_under_chroot", "test_the_default_sandbox", "test_a_sandbox_asked")


# What a failure on bbad515 means where its message does not say it (a log dump), or where
# the test could not judge the defect itself there.
NOTES = {
    "test_4_stop_ends_a_connection_stuck_inside_a_message":
        "the log says 'guest 1 did not stop within 5 s': stop waited for the rest of a message",
    "test_4_requests_before_init_are_eio_and_do_not_greet":
        "no 'never sent FUSE INIT' line: a request before INIT counted as greeted",
    "test_5_a_guest_opening_without_end_gets_emfile_and_the_others_carry_on":
        "no --fds-per-guest default was logged (there was none): cannot count to the cap",
    "test_7_guest_caused_errors_are_logged_once_per_kind_per_interval[info]":
        "one log line per refused request (9,000 for 9,000)",
    "test_7_guest_caused_errors_are_logged_once_per_kind_per_interval[warn]":
        "one 'reply truncated' line per request at warn",
    "test_killpriv_v2_clears_set_id_even_for_guest_root":
        "cannot judge there: the test's second INIT (to negotiate KILLPRIV_V2) was EIO",
    "test_a_single_user_export_squashes_every_guest_user":
        "cannot judge there: no --squash-uid option yet",
    "test_a_donated_read_fd_cannot_be_upgraded[rw-export]":
        "the front-end reopened the donated read fd O_RDWR and wrote through it",
    "test_a_donated_read_fd_cannot_be_upgraded[ro-export]":
        "the front-end reopened the donated read fd O_RDWR and wrote through it",
    "test_the_sandbox_leaves_the_hosts_mounts_alone":
        "a guard of the sandbox's side effects: no sandbox on bbad515, nothing to regress",
}


def old_main_table(old: str, now: str) -> None:
    before = {name: result for name, result in junit(old).items()
              if not name.partition("::")[2].startswith(LATER_FEATURES)}
    after = junit(now)
    print("\n## The regression tests on the old main\n")
    print("Each regression test of issue 11 (tests/security/test_defects.py, one or more per")
    print("numbered defect; test_credentials.py for defect 2; test_sandbox.py for defect 3) run")
    print("on bbad515, the main the defects were found on, by `scripts/security-on-old-main`")
    print("(today's tests, a shim for the modules that moved and for the test front-end's")
    print("`acting_as`; the daemon judged is bbad515's), and on this tree. A test that cannot")
    print("judge there says why in its cell (an option or API that did not exist yet).\n")
    print("| test | on bbad515 | now |")
    print("|---|---|---|")
    for name in before:
        note = NOTES.get(name.partition("::")[2])
        cell = f"FAIL: {note}" if note and before[name] != "pass" else before[name]
        if note and before[name] == "pass":
            cell = f"pass ({note})"
        print(f"| `{name}` | {cell} | {after.get(name, 'not run')} |")
    fails = sum(v != "pass" for v in before.values())
    passes = sum(after.get(n) == "pass" for n in before)
    print(f"\n{len(before)} tests: {fails} fail on bbad515, {passes} pass now.")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--old")
    parser.add_argument("--now")
    args = parser.parse_args()
    rows = []
    escapes = 0
    for name in ATTACKS:
        cells = []
        for backend in BACKENDS:
            with tempfile.TemporaryDirectory() as tmp:
                try:
                    cells.append(run_attack(name, backend, Path(tmp), scene_of(name)))
                except AssertionError as err:
                    escapes += 1
                    cells.append(f"**ESCAPE**: {err}")
                except Exception as err:  # noqa: BLE001 - the table says what happened
                    cells.append(f"error: {type(err).__name__}: {err}".replace("\n", " ")[:120])
        rows.append((name, *cells))
    print("# Security: the attack list on pagefs-host and QEMU's virtiofsd\n")
    print("Each attack runs on a fresh scene (an export with host-placed symlinks out, a FIFO,")
    print("device nodes, a set-gid directory and a root set-uid file, beside a directory of")
    print("secrets) through the project's front-end, as root; a cell is the back-end's answer")
    print("(an errno, or what happened). Every attack also asserts that nothing outside the")
    print("export was read, written or created and that a read-only export was not written;")
    print("**ESCAPE** marks one that was. Generated by `tests/security/report.py`; the same")
    print("attacks are `tests/security/test_attacks.py`. QEMU's virtiofsd (7.2, C) runs with")
    print("`-o sandbox=chroot -o cache=none`, serves one guest and has no read-only export or")
    print("DAX window, hence its n/a cells. `pagefs` is pagefs-host with its default sandbox")
    print("(namespace, as root); `pagefs-chroot` with `--sandbox chroot`, which has no")
    print("read-only mount, so a donated read fd can be reopened for writing there.\n")
    print(f"| attack | {' | '.join(BACKENDS)} |")
    print("|---|" + "---|" * len(BACKENDS))
    for name, *cells in rows:
        print(f"| {name} | " + " | ".join(cells) + " |")
    print(f"\n{len(rows)} attacks; escapes: {escapes}.")
    if args.old and args.now:
        old_main_table(args.old, args.now)
    return 0


if __name__ == "__main__":
    sys.exit(main())
