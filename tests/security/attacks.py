"""The attack list: what a hostile guest tries against a virtio-fs back-end, each as a
function of a connected guest and the scene, returning what the back-end answered.

Each attack raises AssertionError if it reached outside the export (read a secret,
wrote or created anything there) or wrote a read-only export; the harness also checks
the tree outside the export is unchanged after every attack. An attack a back-end cannot
be asked (no second guest, no read-only export, no DAX window) returns "n/a: why".
Used by test_attacks.py (pagefs-host and QEMU's virtiofsd) and report.py (the table).
"""

from __future__ import annotations

import errno
import mmap
import os
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from donations import observing

from pagefs.impl import protocol as p
from pagefs.impl.client.fuse_client import FuseClient
from pagefs.impl.client.host_daemon import host_daemon
from pagefs.impl.client.virtiofsd import Virtiofsd
from pagefs.impl.protocol.virtio_fs import request_queue

PAGE = mmap.PAGESIZE
NO_FH = (1 << 64) - 1
SECRET = b"HOST-SECRET-0123"
INSIDE = b"inside the export"
BACKENDS = ("pagefs", "pagefs-chroot", "virtiofsd")
# pagefs-host's command-line options per back-end name: its default sandbox (namespace,
# as root), and virtiofsd's chroot mode, which has no read-only mount
PAGEFS_OPTIONS = {"pagefs": (), "pagefs-chroot": ("--sandbox", "chroot")}
# What QEMU's C virtiofsd 7.2 lets through, found by this list: it switches credentials
# only for the requests that create (not SETATTR), and makes device nodes on MKNOD.
KNOWN_DEPARTURES = {
    ("mknod a character device", "virtiofsd"): "a device node was made",
    ("chmod root's file to set-uid, as uid 1000", "virtiofsd"): "root's file became set-uid",
}


@dataclass
class Scene:
    export: Path
    outside: Path
    backend: str
    connect: Callable[[], FuseClient]
    read_only: bool
    donated: list[int]  # copies of every fd donated to this process's windows


def build(tmp: Path) -> tuple[Path, Path]:
    """An export with host-placed traps beside an outside directory holding secrets."""
    outside = tmp / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(SECRET)
    (outside / "dir").mkdir()
    (outside / "dir" / "secret").write_bytes(SECRET)
    export = tmp / "export"
    export.mkdir()
    export.chmod(0o777)
    (export / "file").write_bytes(INSIDE.ljust(PAGE, b"."))
    (export / "file").chmod(0o644)
    (export / "dir").mkdir()
    os.symlink(str(outside / "secret"), export / "abs-link")
    os.symlink("../outside/secret", export / "rel-link")
    os.symlink(str(outside / "dir"), export / "dir-link")
    os.mkfifo(export / "fifo")
    os.mknod(export / "mem", 0o666 | 0o020000, os.makedev(1, 1))  # like /dev/mem
    os.mknod(export / "zero", 0o666 | 0o020000, os.makedev(1, 5))
    sgid = export / "sgid-dir"
    sgid.mkdir()
    os.chown(sgid, 0, 2000)
    sgid.chmod(0o2777)
    (export / "suid-root").write_bytes(b"#!/bin/sh\n")
    (export / "suid-root").chmod(0o4755)
    return export, outside


def snapshot(root: Path) -> dict[str, tuple[int, int, int, bytes | None]]:
    out = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        data = path.read_bytes() if path.is_file() and not path.is_symlink() else None
        out[str(path.relative_to(root))] = (st.st_mode, st.st_uid, st.st_size, data)
    return out


@contextmanager
def serving(backend: str, export: Path, read_only: bool) -> Iterator[Callable[[], FuseClient]]:
    if backend in PAGEFS_OPTIONS:
        with host_daemon(str(export), read_only=read_only,
                         options=PAGEFS_OPTIONS[backend]) as host:
            yield lambda: FuseClient.connect(host.socket_path, window_size=16 << 20)
    else:
        with Virtiofsd(export, cache="none") as daemon:
            yield lambda: FuseClient.connect(daemon.socket_path, window_size=0)


def errname(call: Callable[[], object]) -> str:
    """The errno name a call failed with, or "ok"."""
    try:
        call()
    except OSError as err:
        return errno.errorcode.get(err.errno or 0, str(err.errno))
    return "ok"


def raw(guest: FuseClient, opcode: int, nodeid: int, payload: bytes) -> str:
    """Send a hand-built request (for what the codec refuses to build); the errno name."""
    header = struct.pack("<IIQQIIII", 40 + len(payload), opcode, 999_000 + opcode, nodeid,
                         0, 0, os.getpid(), 0)
    reply = guest.frontend.call(request_queue(0), header + payload, 4096, timeout=10)
    code = -struct.unpack_from("<i", reply, 4)[0] if len(reply) >= 16 else 0
    assert SECRET not in reply
    return errno.errorcode.get(code, "ok") if code else "ok"


def no_secret(data: bytes) -> bytes:
    assert SECRET not in data, "a secret from outside the export was read"
    return data


def read_all(guest: FuseClient, nodeid: int) -> str:
    """Open and read a node: the errno name, or "read N bytes" of what it holds."""
    try:
        fh = guest.open(nodeid, os.O_RDONLY).fh
    except OSError as err:
        return errno.errorcode[err.errno or 0]
    data = no_secret(guest.read(nodeid, fh, 0, 4096))
    return f"read {len(data)} bytes of the export"


def lookup_and_read(guest: FuseClient, parent: int, name: bytes) -> str:
    """Look `name` up in `parent`, then open and read it: as `read_all`, or the errno name
    of a refused lookup."""
    try:
        nodeid = guest.lookup(parent, name).nodeid
    except OSError as err:
        return errno.errorcode[err.errno or 0]
    return read_all(guest, nodeid)


# -- the attacks ------------------------------------------------------------------------

ATTACKS: dict[str, Callable[[Scene, FuseClient], str]] = {}


def attack(name: str):  # noqa: ANN201
    def register(fn: Callable[[Scene, FuseClient], str]) -> Callable[[Scene, FuseClient], str]:
        ATTACKS[name] = fn
        return fn
    return register


@attack("lookup '..' of the export root")
def _(s: Scene, g: FuseClient) -> str:
    try:
        entry = g.lookup(1, b"..")
    except OSError as err:
        return errno.errorcode[err.errno or 0]
    assert entry.attr.ino != s.export.parent.stat().st_ino, "'..' named the export's parent"
    return "ok: the root itself"


@attack("lookup '../outside/secret' as one name")
def _(s: Scene, g: FuseClient) -> str:
    return raw(g, p.Opcode.LOOKUP, 1, b"../outside/secret\0")


@attack("lookup a name with NUL inside")
def _(s: Scene, g: FuseClient) -> str:
    return raw(g, p.Opcode.LOOKUP, 1, b"file\0../outside\0")


@attack("lookup a 256-byte name")
def _(s: Scene, g: FuseClient) -> str:
    return errname(lambda: g.lookup(1, b"a" * 256))


@attack("create a name with '/' pointing out")
def _(s: Scene, g: FuseClient) -> str:
    body = struct.pack("<IIII", os.O_RDWR | os.O_CREAT, 0o644, 0, 0) + b"../outside/new\0"
    return raw(g, p.Opcode.CREATE, 1, body)


@attack("mkdir a 300-byte name")
def _(s: Scene, g: FuseClient) -> str:
    return errname(lambda: g.mkdir(1, b"d" * 300, 0o755))


@attack("rename a file to '../escaped'")
def _(s: Scene, g: FuseClient) -> str:
    body = struct.pack("<Q", 1) + b"file\0../escaped\0"
    return raw(g, p.Opcode.RENAME, 1, body)


@attack("open a host-placed absolute symlink out")
def _(s: Scene, g: FuseClient) -> str:
    return read_all(g, g.lookup(1, b"abs-link").nodeid)


@attack("open a host-placed relative symlink out")
def _(s: Scene, g: FuseClient) -> str:
    return read_all(g, g.lookup(1, b"rel-link").nodeid)


@attack("lookup through a symlink to an outside directory")
def _(s: Scene, g: FuseClient) -> str:
    return lookup_and_read(g, g.lookup(1, b"dir-link").nodeid, b"secret")


@attack("guest symlink out, then open it")
def _(s: Scene, g: FuseClient) -> str:
    if s.read_only:
        return "n/a: read-only scene"
    link = g.symlink(1, b"mylink", str(s.outside / "secret").encode()).nodeid
    return read_all(g, link)


@attack("directory swapped for a symlink out mid-sequence")
def _(s: Scene, g: FuseClient) -> str:
    (s.export / "swap").mkdir()
    swapped = g.lookup(1, b"swap").nodeid
    os.rename(s.export / "swap", s.export / "swap-old")
    os.symlink(str(s.outside / "dir"), s.export / "swap")
    return lookup_and_read(g, swapped, b"secret")


@attack("file swapped for a symlink out between lookup and open")
def _(s: Scene, g: FuseClient) -> str:
    (s.export / "victim").write_bytes(INSIDE)
    nodeid = g.lookup(1, b"victim").nodeid
    os.unlink(s.export / "victim")
    os.symlink(str(s.outside / "secret"), s.export / "victim")
    return read_all(g, nodeid)


@attack("open a host-placed device node (1:1, like /dev/mem)")
def _(s: Scene, g: FuseClient) -> str:
    return read_all(g, g.lookup(1, b"mem").nodeid)


@attack("open a host-placed FIFO")
def _(s: Scene, g: FuseClient) -> str:
    return read_all(g, g.lookup(1, b"fifo").nodeid)


@attack("mknod a character device")
def _(s: Scene, g: FuseClient) -> str:
    body = struct.pack("<III4x", 0o666 | 0o020000, os.makedev(1, 1), 0) + b"mydev\0"
    result = raw(g, p.Opcode.MKNOD, 1, body)
    made = s.export / "mydev"
    assert not (made.exists() and made.is_char_device()), "a device node was made"
    return result


@attack("create set-gid in a set-gid dir of another group, as uid 1000")
def _(s: Scene, g: FuseClient) -> str:
    if s.read_only:
        return "n/a: read-only scene"
    with g.acting_as(1000, 1000):
        sgid = g.lookup(1, b"sgid-dir").nodeid
        result = errname(lambda: g.create(sgid, b"f", os.O_WRONLY | os.O_CREAT, 0o2755))
    made = s.export / "sgid-dir" / "f"
    if made.exists():
        assert not made.stat().st_mode & 0o2000 or made.stat().st_uid != 0, "root set-gid"
        return f"{result}: owner {made.stat().st_uid}, mode {made.stat().st_mode & 0o7777:o}"
    return result


@attack("create set-uid 04755 as uid 1000")
def _(s: Scene, g: FuseClient) -> str:
    if s.read_only:
        return "n/a: read-only scene"
    with g.acting_as(1000, 1000):
        result = errname(lambda: g.create(1, b"suid", os.O_WRONLY | os.O_CREAT, 0o4755))
    made = s.export / "suid"
    assert not (made.exists() and made.stat().st_uid == 0 and made.stat().st_mode & 0o4000), \
        "a root-owned set-uid file was made for uid 1000"
    return f"{result}: owner {made.stat().st_uid}" if made.exists() else result


@attack("chmod root's file to set-uid, as uid 1000")
def _(s: Scene, g: FuseClient) -> str:
    with g.acting_as(1000, 1000):
        nodeid = g.lookup(1, b"file").nodeid
        result = errname(lambda: g.setattr(nodeid, mode=0o104755))
    assert not (s.export / "file").stat().st_mode & 0o4000, "root's file became set-uid"
    return result


@attack("write root's set-uid file, as uid 1000")
def _(s: Scene, g: FuseClient) -> str:
    with g.acting_as(1000, 1000):
        nodeid = g.lookup(1, b"suid-root").nodeid
        result = errname(lambda: g.open(nodeid, os.O_WRONLY))
    return result


@attack("another guest's handle")
def _(s: Scene, g: FuseClient) -> str:
    if s.backend == "virtiofsd":
        return "n/a: one guest per daemon"
    nodeid = g.lookup(1, b"file").nodeid
    fh = g.open(nodeid, os.O_RDONLY).fh
    with s.connect() as other:
        own = other.lookup(1, b"dir").nodeid
        return errname(lambda: no_secret(other.read(own, fh + 1000, 0, 100))) + \
            " / " + errname(lambda: other.read(nodeid, fh, 0, 100))


@attack("another guest's nodeid")
def _(s: Scene, g: FuseClient) -> str:
    if s.backend == "virtiofsd":
        return "n/a: one guest per daemon"
    nodeid = g.lookup(1, b"dir").nodeid  # a nodeid the other guest never looked up
    with s.connect() as other:
        return errname(lambda: other.getattr(nodeid)) + " / " + \
            errname(lambda: other.lookup(nodeid, b"x"))


@attack("READ at offset 2^63")
def _(s: Scene, g: FuseClient) -> str:
    nodeid = g.lookup(1, b"file").nodeid
    fh = g.open(nodeid, os.O_RDONLY).fh
    return errname(lambda: g.read(nodeid, fh, 1 << 63, 16))


@attack("request as uid -1")
def _(s: Scene, g: FuseClient) -> str:
    with g.acting_as(0xFFFF_FFFF, 0xFFFF_FFFF):
        result = errname(lambda: g.create(1, b"as-minus-one", os.O_WRONLY | os.O_CREAT, 0o644))
    made = s.export / "as-minus-one"
    if made.exists():
        return f"{result}: owner {made.stat().st_uid}"
    return result


@attack("OPEN a directory, then map it")
def _(s: Scene, g: FuseClient) -> str:
    result = errname(lambda: g.open(1, os.O_RDONLY))
    if result != "ok":
        return result
    fh = g.open(1, os.O_RDONLY).fh
    return "open ok, map " + errname(lambda: g.setupmapping(1, fh, 0, PAGE, False, 0))


@attack("SETUPMAPPING of the root by nodeid")
def _(s: Scene, g: FuseClient) -> str:
    return errname(lambda: g.setupmapping(1, NO_FH, 0, PAGE, False, 0))


def _kept_fd(s: Scene, g: FuseClient) -> int | str:
    """A read mapping of the export's file, and the donated fd the front-end kept."""
    nodeid = g.lookup(1, b"file").nodeid
    result = errname(lambda: g.setupmapping(nodeid, NO_FH, 0, PAGE, False, 0))
    if result != "ok":
        return f"no fd: SETUPMAPPING {result}"
    return s.donated[-1]


@attack("donated fd: reopen /proc/self/fd/N O_RDWR and write")
def _(s: Scene, g: FuseClient) -> str:
    fd = _kept_fd(s, g)
    if isinstance(fd, str):
        return fd
    try:
        rw = os.open(f"/proc/self/fd/{fd}", os.O_RDWR)
    except OSError as err:
        return errno.errorcode[err.errno or 0]
    os.close(rw)
    return "ok: reopened for writing"


@attack("donated fd: openat(fd, '..')")
def _(s: Scene, g: FuseClient) -> str:
    fd = _kept_fd(s, g)
    if isinstance(fd, str):
        return fd
    return errname(lambda: os.close(os.open("..", os.O_RDONLY, dir_fd=fd)))


@attack("donated fd: fchmod 04777")
def _(s: Scene, g: FuseClient) -> str:
    fd = _kept_fd(s, g)
    if isinstance(fd, str):
        return fd
    return errname(lambda: os.fchmod(fd, 0o4777))


@attack("donated fd: ftruncate")
def _(s: Scene, g: FuseClient) -> str:
    fd = _kept_fd(s, g)
    if isinstance(fd, str):
        return fd
    return errname(lambda: os.ftruncate(fd, 0))


# every write path of a read-only export: one attack each
def _ro(name: str, call: Callable[[FuseClient, int, int], object]) -> None:
    def run(s: Scene, g: FuseClient) -> str:
        if not s.read_only:
            return "n/a: writable scene"
        nodeid = g.lookup(1, b"file").nodeid
        fh = g.open(nodeid, os.O_RDONLY).fh
        return errname(lambda: call(g, nodeid, fh))
    ATTACKS[f"read-only export: {name}"] = run


_ro("CREATE", lambda g, n, fh: g.create(1, b"new", os.O_RDWR | os.O_CREAT, 0o644))
_ro("MKDIR", lambda g, n, fh: g.mkdir(1, b"newdir", 0o755))
_ro("SYMLINK", lambda g, n, fh: g.symlink(1, b"newlink", b"file"))
_ro("UNLINK", lambda g, n, fh: g.unlink(1, b"file"))
_ro("RMDIR", lambda g, n, fh: g.rmdir(1, b"dir"))
_ro("RENAME", lambda g, n, fh: g.rename(1, b"file", 1, b"moved"))
_ro("SETATTR size", lambda g, n, fh: g.setattr(n, size=0))
_ro("SETATTR mode", lambda g, n, fh: g.setattr(n, mode=0o777))
_ro("OPEN O_RDWR", lambda g, n, fh: g.open(n, os.O_RDWR))
_ro("OPEN O_TRUNC", lambda g, n, fh: g.open(n, os.O_RDONLY | os.O_TRUNC))
_ro("WRITE through a read handle", lambda g, n, fh: g.write(n, fh, 0, b"x"))
_ro("SETUPMAPPING writable by handle", lambda g, n, fh: g.setupmapping(n, fh, 0, PAGE, True, 0))
_ro("SETUPMAPPING writable by nodeid",
    lambda g, n, fh: g.setupmapping(n, NO_FH, 0, PAGE, True, 0))


def run_attack(name: str, backend: str, tmp: Path, read_only: bool) -> str:
    """One attack on a fresh scene; raises AssertionError on an escape or a write to a
    read-only export."""
    export, outside = build(tmp)
    outside_before = snapshot(outside)
    export_before = snapshot(export) if read_only else None
    donated: list[int] = []
    try:
        if read_only and backend == "virtiofsd":
            return "n/a: no read-only export"
        with observing(lambda fd, *_: donated.append(os.dup(fd))), \
                serving(backend, export, read_only) as connect:
            scene = Scene(export, outside, backend, connect, read_only, donated)
            with connect() as guest:
                result = ATTACKS[name](scene, guest)
    finally:
        for fd in donated:
            os.close(fd)
    assert snapshot(outside) == outside_before, "something outside the export changed"
    assert not (export.parent / "escaped").exists() and not (outside / "new").exists()
    if export_before is not None:
        assert snapshot(export) == export_before, "the read-only export changed"
    return result


def scene_of(name: str) -> bool:
    """True when the attack runs on a read-only export."""
    return name.startswith("read-only export")
