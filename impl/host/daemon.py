"""pagefs-host: export a host directory to guests over vhost-user, with DAX by fd donation.

    pagefs-host --socket-path PATH --shared-dir DIR [--read-only] [--max-guests N]
                [--window-size SIZE] [--handshake-timeout SECONDS]
                [--slot-grace SECONDS] [--tag TAG]
                [--cache never|auto|always] [--dispatch fast|python]
                [--workers process|thread]
                [--log-level LEVEL]
    pagefs-host --fd FD --shared-dir DIR ...     (an inherited listening socket: libvirt)
    pagefs-host --print-capabilities

One listening unix socket; each guest connects to it with its own vhost-user
connection, served in a worker process of its own (workers.py; with `--workers thread`,
on a thread of the daemon's): transport back-end -> FUSE dispatch -> passthrough session.
When a guest disconnects or dies, its session is closed: every nodeid, handle and mapping
record it held is released (RECLAIM). SIGTERM or SIGINT stops the daemon: the socket is
removed and every guest's connection closed.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import select
import signal
import socket
import sys
import threading
import time

from pagefs.impl.host import cache_policy, sandbox
from pagefs.impl.host.cache_policy import CachePolicy
from pagefs.impl.host.credentials import Credentials, drop_supplementary_groups
from pagefs.impl.host.dispatch import Dispatcher, guest_log
from pagefs.impl.host.fastpath import FastPath
from pagefs.impl.host.listener import adopt_listener, bind_listener
from pagefs.impl.host.options import (
    CAPABILITIES,
    EXIT_FAILURE,
    HANDSHAKE_SECONDS,
    LOG_LEVELS,
    PROG,
    RLIMIT_NOFILE_WANTED,
    SLOT_GRACE_SECONDS,
    default_fds_per_guest,
    parse_args,
)
from pagefs.impl.host.passthrough import GuestSession, PassthroughFS, refusal_log
from pagefs.impl.host.workers import Workers
from pagefs.impl.protocol.virtio_fs import VirtioFsConfig
from pagefs.impl.transport.backend import VhostUserBackend, peer_log
from pagefs.impl.transport.virtqueue import SPIN_MAX_NS

log = logging.getLogger("pagefs.host")

# How long a guest's connection gets to wind down at shutdown before the daemon leaves.
STOP_GRACE_SECONDS = 5.0
# How often a thread-mode daemon waiting for a --max-guests slot looks (a worker's slot
# wakes the wait itself).
SLOT_POLL_SECONDS = 0.01
# How long to back off when accept() fails for want of descriptors.
ACCEPT_RETRY_SECONDS = 0.1


class Daemon:
    """The listening socket and the guests connected to it."""

    def __init__(self, fs: PassthroughFS, listener: socket.socket,
                 socket_name: _SocketName | None, *,
                 max_guests: int | None, window_size: int,
                 handshake_timeout: float = HANDSHAKE_SECONDS,
                 slot_grace: float = SLOT_GRACE_SECONDS, device_config: bytes = b"",
                 cache: CachePolicy = cache_policy.DEFAULT,
                 credentials: Credentials | None = None, fast: bool = True,
                 spin_max_ns: int = SPIN_MAX_NS, workers: str = "process") -> None:
        self._fs = fs
        # a process per guest (None: a thread per guest, in this process)
        self._workers = Workers() if workers == "process" else None
        self._in_worker = False
        self._fast = fast
        self._spin_max_ns = spin_max_ns
        self._listener = listener
        self._socket_name = socket_name
        self._max_guests = max_guests
        self._window_size = window_size
        self._handshake_timeout = handshake_timeout
        self._slot_grace = slot_grace
        self._device_config = device_config
        self._cache = cache
        self._credentials = credentials or Credentials()
        self._lock = threading.Lock()
        self._guests: dict[threading.Thread, VhostUserBackend | None] = {}
        self._stopping = False
        self._stop_seen = False  # a stop drained from the pipe while waiting for a slot
        self._signals_handled = False
        self._stop_r, self._stop_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def handle_stop_signals(self) -> None:
        """SIGTERM and SIGINT stop the daemon. The wakeup fd wakes the accept loop even
        when the kernel delivers the signal to a guest's thread rather than the main one."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: self.request_stop())
        if self._workers is not None:  # a worker's exit wakes the accept loop to reap it
            signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.set_wakeup_fd(self._stop_w, warn_on_full_buffer=False)
        self._signals_handled = True

    def request_stop(self) -> None:
        """Wake the accept loop to shut down; safe from a signal handler."""
        try:
            os.write(self._stop_w, b"x")
        except BlockingIOError:
            pass  # already requested

    def run(self) -> None:
        """Accept guests until asked to stop, then close every connection."""
        try:
            self._accept_loop()
        finally:
            self._shutdown()

    def _accept_loop(self) -> None:
        while not self._stop_seen:
            slots = self._workers.slots if self._workers is not None else []
            ready, _, _ = select.select([self._listener.fileno(), self._stop_r, *slots],
                                        [], [])
            # slots first: a worker frees its slot before it exits, so once it is reaped
            # (its SIGCHLD read below) the parent holds nothing of its guest
            for fd in set(ready) & set(slots):
                assert self._workers is not None
                self._workers.slot_freed(fd)
            if self._stop_r in ready and self._stop_asked():
                return
            if self._listener.fileno() not in ready:
                continue
            try:
                conn, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as err:  # EMFILE and the like: keep serving who is connected
                log.warning("cannot accept a connection: %s", _reason(err))
                time.sleep(ACCEPT_RETRY_SECONDS)
                continue
            conn.setblocking(True)
            try:
                self._admit(conn)
            except OSError as err:
                log.warning("refused connection: %s", _reason(err))
                conn.close()

    def _stop_asked(self) -> bool:
        """Drain the stop pipe: a stop request or signal, now or drained before, or only
        SIGCHLD (the wakeup fd's byte for it: a worker exited, reaped here)?"""
        try:
            woken = os.read(self._stop_r, 512)
        except BlockingIOError:
            woken = b""
        if self._workers is not None:
            self._workers.reap()
        self._stop_seen |= any(byte != signal.SIGCHLD for byte in woken)
        return self._stop_seen

    def _admit(self, conn: socket.socket) -> None:
        peer = _peer_pid(conn)
        live = self._live_after_grace()
        if self._stop_seen:  # stopping: the daemon takes no one in
            conn.close()
        elif self._max_guests is not None and live >= self._max_guests:
            log.warning("refused connection from pid %s: %d guests connected "
                        "(--max-guests %d)", peer, live, self._max_guests)
            conn.close()
        elif self._workers is None:
            self._start_thread(conn, self._fs.session(), peer)
        else:  # forked from this single-threaded process, which keeps no part of it
            name = self._fs.guest_name()
            try:
                self._workers.start(name, lambda: self._work(conn, name, peer))
            finally:
                conn.close()

    def _live(self) -> int:
        """Guests holding a --max-guests slot."""
        if self._workers is not None:
            self._workers.reap()
            return len(self._workers)
        with self._lock:
            return len(self._guests)

    def _live_after_grace(self) -> int:
        """Guests holding a slot, once any that is going has let it go: a guest's
        connection closes a moment before its session is released and its slot freed
        (milliseconds; more on a loaded machine), and a guest that came in that moment
        must not be refused for it. Waits up to the slot grace, only when all are taken,
        and no longer once a stop is asked: the accept loop waits here, and a stop must
        end the daemon at once."""
        deadline = time.monotonic() + self._slot_grace
        live = self._live()
        if self._max_guests is not None and live >= self._max_guests:
            log.debug("a new connection waits up to %g s for a --max-guests slot",
                      self._slot_grace)
        while self._max_guests is not None and live >= self._max_guests:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            if self._workers is not None:
                slots = self._workers.slots
                ready, _, _ = select.select([self._stop_r, *slots], [], [], left)
                for fd in set(ready) & set(slots):
                    self._workers.slot_freed(fd)
            else:
                ready, _, _ = select.select([self._stop_r], [], [],
                                            min(left, SLOT_POLL_SECONDS))
            if self._stop_r in ready and self._stop_asked():
                break
            live = self._live()
        return live

    def _work(self, conn: socket.socket, name: str, peer: int | None) -> None:
        """In a guest's worker: serve it on a thread of its own, as a daemon of one guest,
        until it goes or a stop signal comes."""
        self._in_worker = True
        self._listener.close()
        os.close(self._stop_r)  # the parent's pipe: this process gets its own
        os.close(self._stop_w)
        self._stop_r, self._stop_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        if self._signals_handled:
            signal.set_wakeup_fd(self._stop_w, warn_on_full_buffer=False)
        if self._start_thread(conn, self._fs.session(name), peer):
            select.select([self._stop_r], [], [])  # the guest gone (its thread wrote), or a signal
        self._stop_guests()
        for held_back in (guest_log, refusal_log, peer_log):
            held_back.flush()

    def _start_thread(self, conn: socket.socket, session: GuestSession,
                      peer: int | None) -> bool:
        """Serve the guest on a thread of this process; False if none could start."""
        thread = threading.Thread(target=self._serve, args=(conn, session, peer),
                                  name=session.name, daemon=True)
        with self._lock:
            self._guests[thread] = None
        try:
            thread.start()
        except RuntimeError as err:  # no more threads: this guest waits for a free slot
            with self._lock:
                del self._guests[thread]
            session.close()
            conn.close()
            log.warning("refused connection from pid %s: %s", peer, err)
            return False
        return True

    def _serve(self, conn: socket.socket, session: GuestSession, peer: int | None) -> None:
        me = threading.current_thread()
        log.info("%s connected (pid %s)", session.name, peer)
        why = "disconnected"
        path: FastPath | None = None
        try:
            try:
                backend = VhostUserBackend(conn, window_size=self._window_size,
                                           config=self._device_config,
                                           handshake_timeout=self._handshake_timeout,
                                           spin_max_ns=self._spin_max_ns)
            except BaseException:
                conn.close()
                raise
            with self._lock:
                self._guests[me] = backend
                if self._stopping:  # shutdown began before this guest's back-end existed
                    backend.stop()
            dispatcher = Dispatcher(session, mapper=backend, cache=self._cache,
                                    credentials=self._credentials)
            fast = None
            if self._fast:  # the frequent requests answered in C by the queue threads
                path = FastPath(session.tables, cache=self._cache,
                                credentials=self._credentials,
                                backend_channel=backend.backend_channel,
                                map_sources=session.map_sources())
                dispatcher.gates.append(path.gate)
                fast = path.serve
            backend.serve(dispatcher.handle, fast)
            if not dispatcher.greeted:
                why += " (never sent FUSE INIT)"
            if backend.broken:
                why = f"dropped: {backend.broken}"
        except Exception as err:  # one guest's failure never takes the daemon down
            why = f"failed: {err!r}"
            log.exception("%s: connection failed", session.name)
        finally:
            held = session.stats()
            served = path.served if path is not None else 0
            session.close()
            with self._lock:
                self._guests.pop(me, None)
            if self._workers is not None:
                self._workers.release_slot()
            log.info("%s %s; released %d nodeids, %d handles, %d mappings; %d requests "
                     "answered by the C fast path", session.name, why, held["nodes"],
                     held["handles"], held["mappings"], served)
            if self._in_worker:  # the worker's one guest is gone: it ends
                self.request_stop()

    def _shutdown(self) -> None:
        self._listener.close()
        if self._socket_name is not None:  # an inherited socket is its owner's to remove
            self._socket_name.unlink()
        if self._workers is not None:
            self._workers.stop(STOP_GRACE_SECONDS)
        self._stop_guests()
        self._fs.close()
        for held_back in (guest_log, refusal_log, peer_log):
            held_back.flush()
        if self._signals_handled:
            signal.set_wakeup_fd(-1)
        os.close(self._stop_r)
        os.close(self._stop_w)
        log.info("stopped")

    def _stop_guests(self) -> None:
        """Stop every guest served on a thread of this process and wait for each."""
        with self._lock:
            self._stopping = True
            guests = dict(self._guests)
        for backend in guests.values():
            if backend is not None:
                backend.stop()
        for thread in guests:
            thread.join(STOP_GRACE_SECONDS)
            if thread.is_alive():
                log.warning("%s did not stop within %.0f s", thread.name, STOP_GRACE_SECONDS)


def _device_config(tag: str | None) -> bytes:
    """The virtio-fs config space a generic vhost-user device forwards to the guest; none
    without a tag, so a VMM with its own tag property negotiates exactly as before."""
    if tag is None:
        return b""
    return VirtioFsConfig(tag, num_request_queues=1).encode()


def _peer_pid(conn: socket.socket) -> int | None:
    try:
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
    except OSError:
        return None
    return int.from_bytes(creds[:4], sys.byteorder)


class _SocketName:
    """The listening socket's name, held by its directory's descriptor: removable at
    exit even after a chroot has put the path out of reach."""

    def __init__(self, directory_fd: int, name: str) -> None:
        self._directory_fd, self._name = directory_fd, name

    @classmethod
    def of(cls, path: str | None) -> _SocketName | None:
        if path is None:
            return None
        directory = os.path.dirname(path) or "."
        fd = os.open(directory, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        return cls(fd, os.path.basename(path))

    def unlink(self) -> None:
        try:
            os.unlink(self._name, dir_fd=self._directory_fd)
        except FileNotFoundError:
            pass
        os.close(self._directory_fd)


def _raise_fd_limit() -> None:
    """Every nodeid and handle a guest holds is a host descriptor: raise the limit to
    RLIMIT_NOFILE_WANTED as virtiofsd does (root may raise the hard limit, up to
    fs.nr_open), else to the hard limit; --fds-per-guest keeps each guest to its share."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        with open("/proc/sys/fs/nr_open") as f:
            ceiling = int(f.read())
    except (OSError, ValueError):
        ceiling = hard
    wanted = min(RLIMIT_NOFILE_WANTED, ceiling)
    for limit in ((max(wanted, hard), max(wanted, hard)), (hard, hard)):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, limit)
        except (OSError, ValueError):
            continue
        log.debug("descriptor limit raised from %d to %d", soft, limit[0])
        return


def _reason(err: OSError) -> str:
    """What went wrong, in words: some errors carry no strerror (bind()'s "AF_UNIX path
    too long" is a bare message), and printing None would say nothing."""
    return err.strerror or str(err)


def _fail(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return EXIT_FAILURE


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.print_capabilities:
        print(json.dumps(CAPABILITIES, indent=2))
        return 0
    logging.basicConfig(level=LOG_LEVELS[args.log_level], stream=sys.stderr,
                        format=f"%(asctime)s {PROG}[%(process)d] %(levelname)s %(message)s")
    _raise_fd_limit()
    fds_per_guest = args.fds_per_guest or default_fds_per_guest(
        resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    try:
        fs = PassthroughFS(args.shared_dir, read_only=args.read_only,
                           fds_per_guest=fds_per_guest,
                           writable_map_fds=args.writable_map_fds, sandbox=args.sandbox)
    except OSError as err:
        return _fail(f"shared dir {args.shared_dir}: {_reason(err)}")
    try:
        if args.fd is not None:
            where = f"--fd {args.fd}"
            listener = adopt_listener(args.fd)
        else:
            where = f"socket path {args.socket_path}"
            listener = bind_listener(args.socket_path)
        # the socket's name stays removable at exit whatever root the daemon ends in
        socket_name = _SocketName.of(args.socket_path)
    except OSError as err:
        fs.close()
        return _fail(f"{where}: {_reason(err)}")
    try:
        sandbox.enter(fs.roots)
    except OSError as err:
        fs.close()
        return _fail(f"--sandbox {fs.roots.mode}: {_reason(err)}")
    # Each request's own umask is applied to the modes it makes (CREDENTIALS); the
    # process-wide one would apply to every guest user alike.
    os.umask(0)
    drop_supplementary_groups()
    credentials = Credentials(squash_uid=args.squash_uid, squash_gid=args.squash_gid)
    daemon = Daemon(fs, listener, socket_name, max_guests=args.max_guests,
                    window_size=args.window_size, handshake_timeout=args.handshake_timeout,
                    slot_grace=args.slot_grace,
                    device_config=_device_config(args.tag),
                    cache=cache_policy.CACHE_POLICIES[args.cache], credentials=credentials,
                    fast=args.dispatch == "fast", spin_max_ns=args.spin_us * 1000,
                    workers=args.workers)
    daemon.handle_stop_signals()
    log.info("exporting %s%s on %s, --cache %s, --fds-per-guest %d, --dispatch %s, "
             "--workers %s; %s", fs.root, " read-only" if fs.read_only else "",
             args.socket_path or f"inherited socket {args.fd}", args.cache, fds_per_guest,
             args.dispatch, args.workers,
             credentials.describe())
    log.info("sandbox %s", fs.roots.how)
    daemon.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
