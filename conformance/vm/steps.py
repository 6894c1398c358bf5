"""The step list a new user would try on a real guest, timed, on any back-end.

    python -m pagefs.conformance.vm.steps [--backends pagefs,virtiofsd,9p] [--out FILE.md]

Each step does something in the guest (busybox commands, or single syscalls through the
agent where the errno matters) and checks it against the host directory, or the other
way round; the host's side is read with its own syscalls. A step passes when every check
held, fails with what was seen, or is n/a with the reason when the back-end cannot do it.
Two steps run the project's file exerciser in the guest, with and without mmap; the
last one resets the guest (`reboot -f`, no unmount) and uses the share again.
Times are wall-clock seconds under TCG on a shared machine: read them side by side.
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import os
import shutil
import stat
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pagefs.conformance.vm.agent import AT_FDCWD, Agent
from pagefs.conformance.vm.exercise import exercise
from pagefs.conformance.vm.machine import Machine
from pagefs.conformance.vm.stack import RO_TAG, RW_TAG, stack

BIG = 8 << 20
MANY = 1000
RO_BACKENDS = ("pagefs", "9p")


class Departure(AssertionError):
    """A check that did not hold: what was expected and what was seen."""


def expect(what: str, seen: object, wanted: object) -> None:
    if seen != wanted:
        raise Departure(f"{what}: saw {seen!r}, expected {wanted!r}")


@dataclass
class Scene:
    """What a step works on: the guest, the host directory and the guest's mounts."""

    vm: Machine
    host: str
    backend: str
    guest: str = f"/mnt/{RW_TAG}"
    guest_ro: str = f"/mnt/{RO_TAG}"

    @property
    def agent(self) -> Agent:
        return self.vm.agent

    def sh(self, command: str) -> str:
        return self.agent.check(f"cd {self.guest} && {command}")

    def hostpath(self, name: str) -> str:
        return os.path.join(self.host, name)

    def host_bytes(self, name: str) -> bytes:
        with open(self.hostpath(name), "rb") as f:
            return f.read()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def step_ls(s: Scene) -> str:
    with open(s.hostpath("hello"), "w") as f:
        f.write("hello from the host\n")
    os.mkdir(s.hostpath("sub"))
    os.symlink("hello", s.hostpath("link"))
    names = set(s.sh("ls -1a").split())
    expect("names listed", {"hello", "sub", "link"} - names, set())
    return f"{len(names)} names"


def step_stat(s: Scene) -> str:
    seen = s.sh("stat -c '%s %a %F' hello").strip()
    st = os.stat(s.hostpath("hello"))
    expect("size mode kind", seen, f"{st.st_size} {stat.S_IMODE(st.st_mode):o} regular file")
    return seen


def step_cat(s: Scene) -> str:
    expect("cat", s.sh("cat hello"), "hello from the host\n")
    return "bytes equal"


def step_readlink(s: Scene) -> str:
    expect("readlink", s.sh("readlink link").strip(), "hello")
    return "hello"


def step_write_8m(s: Scene) -> str:
    out = s.sh(f"dd if=/dev/urandom of=big.w bs=1M count={BIG >> 20} 2>/dev/null && "
               "sha256sum big.w")
    data = s.host_bytes("big.w")
    expect("size on the host", len(data), BIG)
    expect("sha256 guest vs host", out.split()[0], _sha256(data))
    return "sha256 equal on both sides"


def step_read_8m(s: Scene) -> str:
    data = os.urandom(BIG)
    with open(s.hostpath("big.r"), "wb") as f:
        f.write(data)
    expect("sha256 host vs guest", s.sh("sha256sum big.r").split()[0], _sha256(data))
    return "sha256 equal on both sides"


def step_readdir_1000(s: Scene) -> str:
    os.mkdir(s.hostpath("many"))
    for i in range(MANY):
        open(s.hostpath(f"many/f{i:04}"), "w").close()
    names = s.sh("ls -1 many").split()
    expect("entries", sorted(names), [f"f{i:04}" for i in range(MANY)])
    return f"{len(names)} entries"


def step_create_append_truncate(s: Scene) -> str:
    s.sh("echo one > f && echo two >> f && truncate -s 6 f")
    expect("host bytes", s.host_bytes("f"), b"one\ntw")
    return "one\\ntw"


def step_namespace(s: Scene) -> str:
    s.sh("mkdir d && echo x > d/a && echo y > d/b && mv d/a d/b && echo z > gone && rm gone"
         " && ln -s d/b sym && echo m > modes && chmod 600 modes"
         " && touch -d '2001-02-03 04:05:06' modes")
    expect("rename over an existing name", s.host_bytes("d/b"), b"x\n")
    expect("old name gone", os.path.lexists(s.hostpath("d/a")), False)
    expect("unlinked", os.path.lexists(s.hostpath("gone")), False)
    expect("symlink", os.readlink(s.hostpath("sym")), "d/b")
    st = os.stat(s.hostpath("modes"))
    expect("chmod", stat.S_IMODE(st.st_mode), 0o600)
    expect("touch -d year", time.gmtime(st.st_mtime).tm_year, 2001)
    return "mkdir, rename over, unlink, symlink, chmod, touch"


def step_host_changes(s: Scene) -> str:
    with open(s.hostpath("hello"), "w") as f:
        f.write("changed by the host\n")
    expect("cat after a host write", s.sh("cat hello"), "changed by the host\n")
    open(s.hostpath("newcomer"), "w").close()
    expect("a new host file listed", "newcomer" in s.sh("ls -1").split(), True)
    os.chmod(s.hostpath("newcomer"), 0o640)
    expect("host chmod", s.sh("stat -c %a newcomer").strip(), "640")
    os.truncate(s.hostpath("hello"), 0)
    expect("host truncate", s.sh("stat -c %s hello").strip(), "0")
    return "write, create, chmod, truncate seen at once"


def step_mmap(s: Scene) -> str:
    data = os.urandom(3 * 4096)
    with open(s.hostpath("mapped"), "wb") as f:
        f.write(data)
    a = s.agent
    fd = int(a.call("open", AT_FDCWD, f"{s.guest}/mapped", os.O_RDWR, 0)[0])
    try:
        a.call("window", 2 << 20)
        a.call("map", fd, 0, 2 << 20, 0, 1)
        expect("MAP_SHARED load", a.call("load", 4096, 4096)[0], data[4096:8192])
        a.call("store", 100, b"STORED BY THE GUEST")
        a.call("fsync", fd, 0)
        expect("store, then fsync, on the host", s.host_bytes("mapped")[100:119],
               b"STORED BY THE GUEST")
    finally:
        a.call("window", 0)
        a.call("close", fd)
    return "load equal, store reached the host"


def _read_only_refusals(s: Scene) -> list[tuple[str, Callable[[], object]]]:
    a, ro = s.agent, s.guest_ro
    return [
        ("open O_WRONLY", lambda: a.call("open", AT_FDCWD, f"{ro}/f", os.O_WRONLY, 0)),
        ("open O_RDWR", lambda: a.call("open", AT_FDCWD, f"{ro}/f", os.O_RDWR, 0)),
        ("open O_APPEND", lambda: a.call("open", AT_FDCWD, f"{ro}/f",
                                         os.O_WRONLY | os.O_APPEND, 0)),
        ("open O_TRUNC", lambda: a.call("open", AT_FDCWD, f"{ro}/f",
                                        os.O_WRONLY | os.O_TRUNC, 0)),
        ("create", lambda: a.call("open", AT_FDCWD, f"{ro}/new", os.O_CREAT | os.O_WRONLY,
                                  0o644)),
        ("mkdir", lambda: a.call("mkdir", AT_FDCWD, f"{ro}/newdir", 0o755)),
        ("rmdir", lambda: a.call("unlink", AT_FDCWD, f"{ro}/d", 0x200)),
        ("unlink", lambda: a.call("unlink", AT_FDCWD, f"{ro}/f", 0)),
        ("rename", lambda: a.call("rename", AT_FDCWD, f"{ro}/f", AT_FDCWD, f"{ro}/g", 0)),
        ("symlink", lambda: a.call("symlink", "f", AT_FDCWD, f"{ro}/sym2")),
        ("chmod", lambda: a.call("chmod", AT_FDCWD, f"{ro}/f", 0o600)),
        ("utimens", lambda: a.call("utimens", AT_FDCWD, f"{ro}/f", 0, 0)),
        ("truncate", lambda: a.call("truncate", f"{ro}/f", 0)),
        ("link", lambda: _sh_errno(a, f"ln {ro}/f {ro}/hard")),
        ("mkfifo", lambda: _sh_errno(a, f"mkfifo {ro}/fifo")),
    ]


def _sh_errno(agent: Agent, command: str) -> None:
    """A busybox command's failure as the errno its message names."""
    status, out = agent.sh(command)
    if status:
        for code in (errno.EROFS, errno.EPERM, errno.ENOSYS, errno.EACCES, errno.EOPNOTSUPP):
            if os.strerror(code) in out:
                raise OSError(code, out.strip())
        raise OSError(errno.EIO, out.strip())


def step_read_only(s: Scene) -> str:
    if s.backend not in RO_BACKENDS:
        raise NotApplicable(f"{s.backend} has no read-only export option")
    with open(s.hostpath("f"), "w") as f:
        f.write("keep")
    os.makedirs(s.hostpath("d"), exist_ok=True)
    before = sorted(os.listdir(s.host))
    wrong = []
    refusals = _read_only_refusals(s)
    for name, attempt in refusals:
        try:
            attempt()
            wrong.append(f"{name}: succeeded")
        except OSError as e:
            if e.errno != errno.EROFS:
                wrong.append(f"{name}: {errno.errorcode.get(e.errno or 0, e.errno)}")
    expect("write paths not refused with EROFS", wrong, [])
    expect("host directory unchanged", sorted(os.listdir(s.host)), before)
    expect("host file unchanged", s.host_bytes("f"), b"keep")
    expect("reads still work", s.agent.check(f"cat {s.guest_ro}/f"), "keep")
    return f"{len(refusals)} write paths refused with EROFS"


def step_reset(s: Scene) -> str:
    s.sh("echo before > reset.txt")
    seconds = s.vm.reset()
    s.vm.mount()
    expect("read after reset", s.sh("cat reset.txt"), "before\n")
    s.sh("echo after >> reset.txt")
    expect("write after reset", s.host_bytes("reset.txt"), b"before\nafter\n")
    return f"guest back in {seconds:.1f} s, share usable"


FSX_OPS = 30000


def _exerciser(mmap: bool) -> Callable[[Scene], str]:
    def step(s: Scene) -> str:
        outcome = exercise(s.vm, f"{s.guest}/fsx-{'mmap' if mmap else 'plain'}",
                           ops=FSX_OPS, seed=2, mmap=mmap)
        if not outcome.held:
            raise Departure(outcome.output[-600:])
        return outcome.output.splitlines()[-1]
    return step


class NotApplicable(Exception):
    """The back-end cannot do what the step needs."""


STEPS: list[tuple[str, Callable[[Scene], str]]] = [
    ("ls", step_ls), ("stat", step_stat), ("cat", step_cat), ("readlink", step_readlink),
    ("write 8 MiB, sha256 both sides", step_write_8m),
    ("read 8 MiB, sha256 both sides", step_read_8m),
    ("readdir of 1000 entries", step_readdir_1000),
    ("create, append, truncate", step_create_append_truncate),
    ("mkdir, rename over, unlink, symlink, chmod, touch", step_namespace),
    ("host changes seen at once", step_host_changes),
    ("mmap MAP_SHARED read and write", step_mmap),
    ("read-only export refuses writes (EROFS)", step_read_only),
    (f"exerciser, {FSX_OPS} ops with mmap", _exerciser(mmap=True)),
    (f"exerciser, {FSX_OPS} ops without mmap", _exerciser(mmap=False)),
    ("reset without unmount (reboot -f)", step_reset),
]


@dataclass
class Step:
    name: str
    verdict: str  # pass, FAIL, n/a
    seconds: float
    detail: str


@dataclass
class Run:
    backend: str
    boot_to_agent: float = 0.0
    boot_to_mount: float = 0.0
    steps: list[Step] = field(default_factory=list)
    error: str = ""

    @property
    def passed(self) -> bool:
        return not self.error and all(s.verdict != "FAIL" for s in self.steps)


def run(backend: str) -> Run:
    """Boot a guest against `backend` with its default options and take every step."""
    result = Run(backend)
    hostdir = tempfile.mkdtemp(prefix="pagefs-vm-steps.")
    os.chmod(hostdir, 0o755)
    try:
        with stack(backend, hostdir, ro=backend in RO_BACKENDS, resets_exit=False) as vm:
            result.boot_to_agent = vm.timings.agent_ready
            result.boot_to_mount = vm.timings.mounted
            scene = Scene(vm, hostdir, backend)
            for name, take in STEPS:
                begun = time.monotonic()
                try:
                    detail, verdict = take(scene), "pass"
                except NotApplicable as e:
                    detail, verdict = str(e), "n/a"
                except (Departure, OSError, RuntimeError) as e:
                    detail, verdict = f"{type(e).__name__}: {e}"[:300], "FAIL"
                result.steps.append(Step(name, verdict, time.monotonic() - begun, detail))
                if vm.agent.lost:  # the guest no longer answers: the rest cannot run
                    result.error = f"after {name!r}: {vm.agent.lost}\n{vm.diagnosis()}"
                    break
    except Exception as e:  # the stack itself did not come up or went away
        result.error = f"{type(e).__name__}: {e}"
    finally:
        shutil.rmtree(hostdir, ignore_errors=True)
    return result


def markdown(runs: list[Run]) -> str:
    """One table: steps down, back-ends across, each cell a verdict and its seconds."""
    head = "| step | " + " | ".join(f"`vm:{r.backend}`" for r in runs) + " |"
    lines = [head, "|---" * (len(runs) + 1) + "|"]
    lines.append("| boot to agent, to mounted (s) | " + " | ".join(
        f"{r.boot_to_agent:.1f}, {r.boot_to_mount:.1f}" for r in runs) + " |")
    for i, (name, _) in enumerate(STEPS):
        cells = []
        for r in runs:
            if i < len(r.steps):
                st = r.steps[i]
                cells.append(f"{'**FAIL**' if st.verdict == 'FAIL' else st.verdict} "
                             f"{st.seconds:.2f} s")
            else:
                cells.append("not run")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    notes = [f"- `vm:{r.backend}`, {s.name}: {s.detail}" for r in runs for s in r.steps
             if s.verdict != "pass" or s.name.startswith("exerciser")]
    for r in runs:
        if r.error:
            first, _, rest = r.error.partition("\n")
            notes.append(f"- `vm:{r.backend}` stopped: {first}")
            if rest.strip():
                notes += ["", "  ```", *(f"  {line}" for line in rest.splitlines()[-40:]),
                          "  ```"]
    return "\n".join(lines + ([""] + notes if notes else [])) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pagefs.conformance.vm.steps",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="pagefs,virtiofsd,9p")
    parser.add_argument("--out", help="write the table to this Markdown file")
    args = parser.parse_args(argv)
    runs = []
    for backend in args.backends.split(","):
        print(f"steps on vm:{backend} ...", file=sys.stderr, flush=True)
        runs.append(run(backend))
    table = markdown(runs)
    print(table)
    if args.out:
        with open(args.out, "w") as f:
            f.write(table)
    return 0 if all(r.passed for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
