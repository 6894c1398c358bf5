"""Programs no one here wrote, run on a mounted share, each judged by its own checks.

    outcome = WORKLOADS["git"](path, Scale.SHORT)

- `fsx`, `fsx-nommap`: the project's exerciser (random I/O checked against a model);
- `sqlite`: sqlite3's `PRAGMA integrity_check` after a write workload (tables, index,
  transactions, updates, deletes, VACUUM) in rollback-journal and WAL modes;
- `git`: init, add, commit, a second commit, `fsck --full --strict`, clean status;
- `tar`: a tree with files, holes, symlinks and hard links extracted onto the share,
  then `tar --compare` against the archive, and archived back and compared byte for byte;
- `compileall`: `python -m compileall` of a copy of a stdlib package, then the package
  imported from its byte code, and a second compileall that must find nothing stale.

Each returns an Outcome: held or not, what it did, and on failure the program's words.
"""

from __future__ import annotations

import enum
import filecmp
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

from pagefs.conformance.exerciser import run as exercise

TIMEOUT = 1800  # seconds one program may take before it counts as hung


class Scale(enum.Enum):
    SHORT = "short"  # for `make test`
    LONG = "long"    # for the report (`make programs`)


@dataclass(frozen=True)
class Outcome:
    held: bool
    seconds: float
    detail: str  # what was done when held; the first words of the failure otherwise


class ProgramFailed(Exception):
    """A program exited non-zero or its own check said no."""


def _run(args: list[str], cwd: str, *, stdin: str | None = None) -> str:
    done = subprocess.run(args, cwd=cwd, input=stdin, capture_output=True, text=True,
                          timeout=TIMEOUT)
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip().splitlines()
        raise ProgramFailed(f"{' '.join(args[:3])} exited {done.returncode}: "
                            f"{said[0] if said else 'nothing said'}")
    return done.stdout


def _fsx(mmap: bool) -> Callable[[str, Scale], str]:
    def workload(path: str, scale: Scale) -> str:
        ops = 100_000 if scale is Scale.LONG else 5_000
        outcome = exercise(os.path.join(path, "fsx.bin"), ops=ops, seed=1, mmap=mmap,
                           timeout=TIMEOUT)
        if not outcome.held:
            lines = outcome.output.splitlines()
            raise ProgramFailed(lines[0] if lines else f"exit status {outcome.status}")
        return outcome.output.split(":", 2)[1].strip().split(" (")[0]
    return workload


def _sqlite(path: str, scale: Scale) -> str:
    rows = 20_000 if scale is Scale.LONG else 2_000
    checked = []
    for journal in ("delete", "wal"):
        db = os.path.join(path, f"{journal}.db")
        script = [f"PRAGMA journal_mode={journal};",
                  "CREATE TABLE t(id INTEGER PRIMARY KEY, k TEXT, v BLOB);",
                  "CREATE INDEX t_k ON t(k);"]
        rng = random.Random(7)
        for start in range(0, rows, 500):
            script.append("BEGIN;")
            script += [f"INSERT INTO t(k, v) VALUES ('{rng.getrandbits(40):x}', "
                       f"randomblob({rng.randrange(10, 3000)}));" for _ in range(500)]
            script.append(f"UPDATE t SET v = randomblob(200) WHERE id % 7 = {start % 7};")
            script.append(f"DELETE FROM t WHERE id % 11 = {start % 11};")
            script.append("COMMIT;")
        script.append("VACUUM;")
        _run(["sqlite3", db], path, stdin="\n".join(script))
        verdict = _run(["sqlite3", db, "PRAGMA integrity_check;"], path).strip()
        count = _run(["sqlite3", db, "SELECT count(*) FROM t;"], path).strip()
        if verdict != "ok":
            raise ProgramFailed(f"integrity_check ({journal}): {verdict.splitlines()[0]}")
        checked.append(f"{journal}: {count} rows ok")
    return "integrity_check " + ", ".join(checked)


def _git(path: str, scale: Scale) -> str:
    files = 2_000 if scale is Scale.LONG else 200
    repo = os.path.join(path, "repo")
    os.mkdir(repo)
    env = ["-c", "user.name=pagefs", "-c", "user.email=pagefs@localhost",
           "-c", "init.defaultBranch=main"]
    _run(["git", *env, "init", "-q"], repo)
    rng = random.Random(3)
    for i in range(files):
        sub = os.path.join(repo, f"d{i % 17}")
        os.makedirs(sub, exist_ok=True)
        with open(os.path.join(sub, f"f{i}.txt"), "wb") as f:
            f.write(rng.randbytes(rng.randrange(0, 20_000)))
    _run(["git", *env, "add", "-A"], repo)
    _run(["git", *env, "commit", "-q", "-m", "first"], repo)
    for i in range(0, files, 3):
        with open(os.path.join(repo, f"d{i % 17}", f"f{i}.txt"), "ab") as f:
            f.write(b"changed\n")
    _run(["git", *env, "commit", "-q", "-a", "-m", "second"], repo)
    _run(["git", *env, "gc", "-q"], repo)
    _run(["git", *env, "fsck", "--full", "--strict", "--no-progress"], repo)
    status = _run(["git", *env, "status", "--porcelain"], repo)
    if status.strip():
        raise ProgramFailed(f"git status not clean after commit: {status.splitlines()[0]}")
    return f"{files} files, 2 commits, gc, fsck --full --strict clean"


def _make_tree(root: str, files: int) -> None:
    rng = random.Random(5)
    for i in range(files):
        sub = os.path.join(root, f"d{i % 9}", f"e{i % 4}")
        os.makedirs(sub, exist_ok=True)
        name = os.path.join(sub, f"f{i}")
        with open(name, "wb") as f:
            if i % 10 == 0:  # a sparse file: data, a hole, data
                f.write(rng.randbytes(4096))
                f.seek(1 << 20, os.SEEK_CUR)
            f.write(rng.randbytes(rng.randrange(0, 50_000)))
        if i % 25 == 0:
            os.symlink(f"f{i}", os.path.join(sub, f"link{i}"))
        if i % 40 == 0:
            os.link(name, os.path.join(sub, f"hard{i}"))


def _tar(path: str, scale: Scale) -> str:
    files = 3_000 if scale is Scale.LONG else 300
    with tempfile.TemporaryDirectory(prefix="pagefs-tar.") as local:
        source = os.path.join(local, "tree")
        _make_tree(source, files)
        archive = os.path.join(path, "tree.tar")
        _run(["tar", "-cf", archive, "-C", local, "tree"], path)  # written onto the share
        out = os.path.join(path, "out")
        os.mkdir(out)
        _run(["tar", "-xf", archive, "-C", out], path)
        _run(["tar", "--compare", "-f", archive, "-C", out], path)
        back = os.path.join(local, "back.tar")
        _run(["tar", "-cf", back, "-C", out, "tree"], path)  # read from the share
        again = os.path.join(local, "again")
        os.mkdir(again)
        _run(["tar", "-xf", back, "-C", again], path)
        differences = _tree_differences(source, os.path.join(again, "tree"))
        if differences:
            raise ProgramFailed(f"round trip changed {differences[0]}")
    return f"{files} files (holes, symlinks, hard links) out and back, tar --compare clean"


def _tree_differences(a: str, b: str) -> list[str]:
    compared = filecmp.dircmp(a, b)
    found = [os.path.join(a, n) for n in
             compared.left_only + compared.right_only + compared.diff_files + compared.funny_files]
    _, mismatch, errors = filecmp.cmpfiles(a, b, compared.common_files, shallow=False)
    found += [os.path.join(a, n) for n in mismatch + errors]
    for sub in compared.common_dirs:
        found += _tree_differences(os.path.join(a, sub), os.path.join(b, sub))
    return found


def _compileall(path: str, scale: Scale) -> str:
    packages = ("email", "json", "xml", "asyncio") if scale is Scale.LONG else ("json",)
    lib = os.path.join(path, "lib")
    os.mkdir(lib)
    stdlib = os.path.dirname(os.__file__)
    for name in packages:
        shutil.copytree(os.path.join(stdlib, name), os.path.join(lib, name),
                        ignore=shutil.ignore_patterns("__pycache__"))
    _run([sys.executable, "-m", "compileall", "-q", lib], path)
    compiled = sorted(os.path.join(d, f) for d, _, fs in os.walk(lib) for f in fs
                      if f.endswith(".pyc"))
    if not compiled:
        raise ProgramFailed("compileall wrote no byte code")
    stamps = {f: os.stat(f).st_mtime_ns for f in compiled}
    check = "; ".join(f"import {n}" for n in packages)
    _run([sys.executable, "-I", "-c",
          f"import sys; sys.path.insert(0, {lib!r}); {check}; "
          f"assert all(m.__file__.startswith({lib!r}) for m in [{', '.join(packages)}])"],
         path)
    _run([sys.executable, "-m", "compileall", "-q", lib], path)
    rewritten = [f for f in compiled if os.stat(f).st_mtime_ns != stamps[f]]
    if rewritten:
        raise ProgramFailed(f"a second compileall found {rewritten[0]} stale")
    return f"{len(compiled)} modules compiled, imported from byte code, none stale after"


WORKLOADS: dict[str, Callable[[str, Scale], str]] = {
    "fsx": _fsx(mmap=True),
    "fsx-nommap": _fsx(mmap=False),
    "sqlite": _sqlite,
    "git": _git,
    "tar": _tar,
    "compileall": _compileall,
}


def run_workload(name: str, path: str, scale: Scale) -> Outcome:
    """Runs WORKLOADS[name] in a fresh directory under `path`."""
    work = os.path.join(path, name)
    start = time.monotonic()
    try:
        os.mkdir(work)
        detail = WORKLOADS[name](work, scale)
    except (ProgramFailed, OSError, subprocess.TimeoutExpired) as e:
        return Outcome(False, time.monotonic() - start, str(e))
    return Outcome(True, time.monotonic() - start, detail)
