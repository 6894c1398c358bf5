"""`make fuzz`: mutation fuzzing of pagefs-host's two inputs, FUSE requests and vhost-user
messages, on the real daemon over its real socket.

    python -m pagefs.fuzz [--messages N] [--seconds S] [--seed K] [--report FILE]

FUSE: valid requests of every served opcode, built on live nodeids and handles, are
mutated (bytes flipped, integer fields set to edge values, truncated, extended, opcode
or length changed) and sent on a connected guest's request queue. vhost-user: every
`VHOST_EVERY` messages a fresh connection sends a mutated handshake. Counted: messages,
replies, errno replies, crashes (the daemon or a guest's worker process died; kept: the
input the fuzzed guest's own worker died on, or that a vhost-user session's did), hangs
(no reply within HANG_SECONDS), and at the end the daemon's descriptor and RSS drift
between the start and the end with no guest connected. The export is a 64 MiB tmpfs,
so a mutated FALLOCATE or WRITE cannot fill the host's disk. Exit 0 only with no crash, no
hang and no fd drift.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from pagefs.impl import protocol as p
from pagefs.impl.client.child import children, exited, rss_kib
from pagefs.impl.client.fuse_client import FuseClient
from pagefs.impl.client.host_daemon import HostDaemon, HostDaemonError, host_daemon
from pagefs.impl.protocol import constants as c
from pagefs.impl.protocol.virtio_fs import request_queue
from pagefs.impl.transport.vhost_user import HEADER, Request

HANG_SECONDS = 10.0
POLL_SECONDS = 0.01
# how pagefs-host logs a guest's worker process that died rather than ended (workers.py)
WORKER_DIED = "dropped: its worker (pid"
# what a crash_inputs entry says of a worker death no FUSE input of ours explains
VHOST_CRASH = "a vhost-user session's worker"
VHOST_EVERY = 2000
RESEED_EVERY = 400
REPLY_ROOM = 1 << 16
EDGES = (0, 1, 0x7F, 0xFF, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF, (1 << 63) - 1, 1 << 63,
         (1 << 64) - 1)
PAGE = os.sysconf("SC_PAGE_SIZE")
NO_FH = (1 << 64) - 1


@dataclass
class Figures:
    messages: int = 0
    replies: int = 0
    errno_replies: int = 0
    no_reply: int = 0
    vhost_sessions: int = 0
    guests_dropped: int = 0
    crashes: int = 0
    hangs: int = 0
    seconds: float = 0.0
    fds_start: int = 0
    fds_end: int = 0
    rss_kib_start: int = 0
    rss_kib_end: int = 0
    crash_inputs: list[str] = field(default_factory=list)


class Seeds:
    """Valid requests on live identifiers of one guest session."""

    def __init__(self, guest: FuseClient) -> None:
        self.guest = guest
        self.refresh()

    def refresh(self) -> None:
        g = self.guest
        try:
            g.init()
        except OSError:
            pass
        self.file = _try(lambda: g.lookup(1, b"file").nodeid, 1)
        self.dir = _try(lambda: g.lookup(1, b"dir").nodeid, 1)
        self.fh = _try(lambda: g.open(self.file, os.O_RDWR).fh, 1)
        self.dh = _try(lambda: g.opendir(self.dir).fh, 1)

    def requests(self) -> list[bytes]:
        f, d, fh, dh = self.file, self.dir, self.fh, self.dh
        bodies: list[tuple[c.Opcode, int, p.RequestBody]] = [
            (c.Opcode.LOOKUP, 1, p.Name(b"file")),
            (c.Opcode.GETATTR, f, p.GetattrIn()),
            (c.Opcode.SETATTR, f, p.SetattrIn(c.SetattrValid.SIZE, size=4096)),
            (c.Opcode.SETATTR, f, p.SetattrIn(c.SetattrValid.MODE, mode=0o644)),
            (c.Opcode.READLINK, f, p.EMPTY),
            (c.Opcode.SYMLINK, d, p.SymlinkIn(b"l", b"file")),
            (c.Opcode.MKDIR, d, p.MkdirIn(0o755, b"m")),
            (c.Opcode.UNLINK, d, p.Name(b"l")),
            (c.Opcode.RMDIR, d, p.Name(b"m")),
            (c.Opcode.RENAME, d, p.RenameIn(d, b"a", b"b")),
            (c.Opcode.OPEN, f, p.OpenIn(os.O_RDONLY)),
            (c.Opcode.CREATE, d, p.CreateIn(os.O_RDWR | os.O_CREAT, 0o644, b"n")),
            (c.Opcode.READ, f, p.ReadIn(fh, 0, 4096)),
            (c.Opcode.WRITE, f, p.WriteIn(fh, 0, b"fuzz")),
            (c.Opcode.STATFS, 1, p.EMPTY),
            (c.Opcode.FLUSH, f, p.FlushIn(fh)),
            (c.Opcode.FSYNC, f, p.FsyncIn(fh)),
            (c.Opcode.RELEASE, f, p.ReleaseIn(fh + 1)),
            (c.Opcode.OPENDIR, d, p.OpenIn(os.O_RDONLY)),
            (c.Opcode.READDIR, d, p.ReadIn(dh, 0, 4096)),
            (c.Opcode.RELEASEDIR, d, p.ReleaseIn(dh + 1)),
            (c.Opcode.SETUPMAPPING, f, p.SetupmappingIn(NO_FH, 0, PAGE, 1, 0)),
            (c.Opcode.REMOVEMAPPING, f, p.RemovemappingIn((p.RemovemappingOne(0, PAGE),))),
            (c.Opcode.FORGET, f, p.ForgetIn(1)),
            (c.Opcode.INTERRUPT, 0, p.InterruptIn(1)),
        ]
        out = []
        for opcode, nodeid, body in bodies:
            try:
                out.append(p.encode_request(p.Request(opcode, 7, nodeid, body, 0, 0, 1)))
            except Exception:  # noqa: BLE001 - a seed the codec will not build is skipped
                continue
        return out


def _try(call: Callable[[], int], default: int) -> int:
    try:
        return call()
    except OSError:
        return default


def mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        kind = rng.randrange(7)
        if kind == 0 and buf:
            buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
        elif kind == 1 and len(buf) >= 8:
            at = rng.randrange(len(buf) - 7)
            buf[at:at + 8] = struct.pack("<Q", rng.choice(EDGES))
        elif kind == 2 and len(buf) >= 4:
            at = rng.randrange(len(buf) - 3)
            buf[at:at + 4] = struct.pack("<I", rng.choice(EDGES) & 0xFFFF_FFFF)
        elif kind == 3:
            del buf[rng.randrange(len(buf) + 1):]
        elif kind == 4:
            buf += rng.randbytes(rng.randrange(64))
        elif kind == 5 and len(buf) >= 8:
            buf[4:8] = struct.pack("<I", rng.randrange(64))  # opcode
        elif kind == 6 and len(buf) >= 4:
            buf[0:4] = struct.pack("<I", rng.choice((0, len(buf), len(buf) + 1, 0xFFFF_FFFF)))
    return bytes(buf)


def vhost_session(rng: random.Random, path: str) -> None:
    """A fresh connection sends a mutated handshake, then goes."""
    script = [
        (Request.GET_FEATURES, b""), (Request.SET_FEATURES, struct.pack("<Q", 1 << 32)),
        (Request.GET_PROTOCOL_FEATURES, b""), (Request.SET_PROTOCOL_FEATURES, b"\0" * 8),
        (Request.SET_OWNER, b""), (Request.GET_QUEUE_NUM, b""),
        (Request.SET_VRING_NUM, struct.pack("<II", 0, 128)),
        (Request.SET_VRING_ADDR, struct.pack("<IIQQQQ", 0, 0, 0, 4096, 8192, 0)),
        (Request.GET_SHMEM_CONFIG, b""), (Request.GET_CONFIG, struct.pack("<III", 0, 40, 0)),
    ]
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        sock.connect(path)
        for request, payload in script[:rng.randrange(1, len(script) + 1)]:
            message = HEADER.pack(request, 1, len(payload)) + payload
            if rng.random() < 0.5:
                message = mutate(rng, message)
            try:
                sock.sendall(message)
                if rng.random() < 0.3:
                    sock.recv(4096)
            except OSError:
                break


def run(messages: int, seconds: float, seed: int, sandbox: str | None = None) -> Figures:
    figures = Figures()
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="pagefs-fuzz-") as export:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "fuzz", export], check=True)
        try:
            _prepare(export)
            options = ("--sandbox", sandbox) if sandbox else ()
            with host_daemon(export, log_level="err", options=options) as host:
                _fuzz(host, export, figures, rng, messages, seconds)
        finally:
            subprocess.run(["umount", "-l", export], check=False)
    return figures


def _prepare(export: str) -> None:
    with open(os.path.join(export, "file"), "wb") as f:
        f.write(b"F" * 3 * PAGE)
    os.mkdir(os.path.join(export, "dir"))


class FuzzedGuest:
    """The guest whose requests are fuzzed, and the daemon's worker process serving it
    (None with --workers thread): a crash of that worker is told from a guest merely
    dropped by the worker's own exit status, which the daemon logs when it reaps it."""

    def __init__(self, host: HostDaemon) -> None:
        self.host = host
        self.client, self.worker = self._connect()
        self.seeds = Seeds(self.client)
        self.pool = self.seeds.requests()
        self.crashed: set[int] = set()  # workers of ours whose death was counted

    def _connect(self) -> tuple[FuseClient, int | None]:
        before = set(children(self.host.pid))
        client = FuseClient.connect(self.host.socket_path, window_size=64 << 20,
                                    timeout=HANG_SECONDS)
        # forked for this connection (a vhost-user session's, accepted meanwhile, ends
        # at once: it has nobody to serve)
        while len(new := [w for w in children(self.host.pid) if w not in before
                          and not exited(w)]) > 1:
            time.sleep(POLL_SECONDS)
        return client, (new[0] if new else None)

    def reseed(self) -> None:
        self.seeds.refresh()
        self.pool = self.seeds.requests()

    def send(self, request: bytes, figures: Figures) -> None:
        """One request, counted; a guest the daemon drops is replaced by a new one."""
        figures.messages += 1
        try:
            reply = self.client.frontend.call(request_queue(0), request, REPLY_ROOM,
                                              timeout=HANG_SECONDS)
        except TimeoutError:
            figures.hangs += 1
            return
        except (ConnectionError, OSError):
            if not self.host.alive():
                figures.crashes += 1
                figures.crash_inputs.append(request.hex())
                raise HostDaemonError("pagefs-host died") from None
            figures.guests_dropped += 1
            self._replace(request, figures)
            return
        if reply:
            figures.replies += 1
            if len(reply) >= 8 and struct.unpack_from("<i", reply, 4)[0] < 0:
                figures.errno_replies += 1
        else:
            figures.no_reply += 1

    def _replace(self, request: bytes, figures: Figures) -> None:
        """The daemon dropped this guest on `request`: if its worker died rather than
        ended, that is a crash on `request`; a new guest carries on."""
        self.client.close()
        gone = self.worker
        deadline = time.monotonic() + HANG_SECONDS
        while gone in children(self.host.pid) and time.monotonic() < deadline:
            time.sleep(POLL_SECONDS)  # until the daemon has reaped it (and logged how)
        if gone in children(self.host.pid):
            figures.hangs += 1  # its guest gone, the worker serves on
        # The daemon's one thread logs a death as it reaps; it took the new connection
        # after that, so the line, if any, is in the log now.
        self.client, self.worker = self._connect()
        if gone is not None and f"{WORKER_DIED} {gone})" in self.host.log():
            self.crashed.add(gone)
            figures.crashes += 1
            figures.crash_inputs.append(request.hex())
        self.seeds = Seeds(self.client)
        self.pool = self.seeds.requests()

    def close(self, figures: Figures) -> None:
        """Disconnect; count every worker death in the log no input of ours explains
        (a vhost-user session's worker: its input is not kept)."""
        self.client.close()
        others = self.host.log().count(WORKER_DIED) - len(self.crashed)
        figures.crashes += others
        figures.crash_inputs += [VHOST_CRASH] * others


def _fuzz(host: HostDaemon, export: str, figures: Figures, rng: random.Random,
          messages: int, seconds: float) -> None:
    time.sleep(0.2)
    figures.fds_start, figures.rss_kib_start = host.open_fds(), rss_kib(host.pid)
    started = time.monotonic()
    guest = FuzzedGuest(host)
    try:
        while figures.messages < messages and time.monotonic() - started < seconds:
            if figures.messages % RESEED_EVERY == 0:
                guest.reseed()
            if figures.messages % VHOST_EVERY == VHOST_EVERY - 1:
                vhost_session(rng, host.socket_path)
                figures.vhost_sessions += 1
            guest.send(mutate(rng, rng.choice(guest.pool)), figures)
    finally:
        guest.close(figures)
        figures.seconds = round(time.monotonic() - started, 1)
    deadline = time.monotonic() + 10
    while host.open_fds() != figures.fds_start and time.monotonic() < deadline:
        time.sleep(0.1)
    figures.fds_end, figures.rss_kib_end = host.open_fds(), rss_kib(host.pid)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pagefs-fuzz", description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=3600.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--report", metavar="FILE", help="write the figures as JSON here")
    parser.add_argument("--sandbox", metavar="MODE",
                        help="pagefs-host's --sandbox (default: the daemon's own default)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("pagefs-fuzz: error: needs root (it mounts a tmpfs for the export)",
              file=sys.stderr)
        return 2
    try:
        figures = run(args.messages, args.seconds, args.seed, args.sandbox)
    except HostDaemonError as err:
        print(f"pagefs-fuzz: the daemon died: {err}", file=sys.stderr)
        return 1
    text = json.dumps(asdict(figures), indent=2)
    print(text)
    if args.report:
        with open(args.report, "w") as out:
            out.write(text + "\n")
    drift = figures.fds_end != figures.fds_start
    return 1 if figures.crashes or figures.hangs or drift else 0


if __name__ == "__main__":
    sys.exit(main())
