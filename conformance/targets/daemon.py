"""Targets whose guest side is pagefs's front-end on a vhost-user socket: a daemon per case.

`pagefs` runs pagefs-host (a separate process, as in production) on a fresh export for
each test case and connects in-process guests through the real front-end and FUSE
client; `virtiofsd[:cache=MODE]` does the same with QEMU's C virtiofsd, which offers no
DAX window (so no mappings), serves one connection, and has no read-only option.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from typing import NamedTuple

from pagefs.conformance.target import (
    CONFINED,
    CREDENTIALS,
    MAPPINGS,
    OWN_HANDLES,
    PEERS,
    RAW_NAMES,
    READ_ONLY,
    RESET,
    SPECIAL,
    Guest,
    Target,
    TargetFactory,
)
from pagefs.conformance.targets.fuseguest import FuseGuest
from pagefs.conformance.targets.hostdir import HostDir

WINDOW_SIZE = 16 << 20  # eight 2 MiB ranges: the spec's default window


RECLAIM_WAIT = 5.0  # seconds a daemon may take to notice a disconnection and clean up

DEATH_WAIT = 1.0  # seconds for a back-end that hung up to be seen to have exited
LOG_LINES = 3  # of a dead back-end's log, shown on the step that met its death


class Served(NamedTuple):
    """A daemon serving one case's export, as the target sees it."""

    socket_path: str
    open_fds: Callable[[], int] | None  # the daemon's descriptor count, if it can be read
    process: subprocess.Popen
    log: Callable[[], str]  # everything it has written to stdout and stderr


GuestMaker = Callable[[str, int], Guest]  # (socket path, window size) -> a connected guest


def fuse_guest(socket_path: str, window_size: int) -> Guest:
    return FuseGuest(socket_path, window_size=window_size)


class DaemonTarget(Target):
    def __init__(self, name: str, capabilities: frozenset[str], exportdir: str,
                 served: Served, stack: contextlib.ExitStack, read_only: bool,
                 window_size: int, guest: GuestMaker = fuse_guest) -> None:
        self.name, self.capabilities, self.read_only = name, capabilities, read_only
        self.host = HostDir(exportdir)
        self.window_size = window_size
        self._served, self._stack, self._export = served, stack, exportdir
        self._socket, self._fds = served.socket_path, served.open_fds
        self._baseline = self._fds() if self._fds else None  # before any guest came
        self._guests: list[Guest] = []
        self._make_guest = guest
        self._death_shown = False

    def leftovers(self) -> str | None:
        if self._fds is None or self._baseline is None:
            return None
        deadline = time.monotonic() + RECLAIM_WAIT
        while (held := self._fds()) > self._baseline and time.monotonic() < deadline:
            time.sleep(0.02)  # the daemon's session threads notice the hang-up and clean up
        if held <= self._baseline:
            return None
        return (f"the daemon holds {held} descriptors after every guest left; it held "
                f"{self._baseline} before any came")

    def diagnostics(self) -> str | None:
        try:
            status = self._served.process.wait(DEATH_WAIT)
        except subprocess.TimeoutExpired:
            return None  # it is alive: it dropped the connection, and its log says why
        self._death_shown = True
        lines = [line.strip() for line in self._served.log().splitlines() if line.strip()]
        said = " / ".join(lines[-LOG_LINES:]) or "nothing logged"
        return f"back-end died (exit status {status}): {said}"

    def connect(self) -> Guest:
        guest = self._make_guest(self._socket, self.window_size or 0)
        self._guests.append(guest)
        got = getattr(guest, "window_size", self.window_size)
        if self.window_size and got < self.window_size:
            self.window_size = got
        return guest

    def close(self) -> None:
        try:
            for guest in self._guests:
                with contextlib.suppress(OSError, ConnectionError):
                    guest.close()
            self._guests.clear()
            # A death already shown on the step that met it is not raised again here,
            # where it would replace that step's departure with an error.
            with contextlib.suppress(*(RuntimeError,) if self._death_shown else ()):
                self._stack.close()
        finally:
            shutil.rmtree(self._export, ignore_errors=True)


class DaemonFactory(TargetFactory):
    """Starts `serve(exportdir, read_only, stack) -> Served` for every case."""

    def __init__(self, name: str, capabilities: frozenset[str],
                 serve: Callable[[str, bool, contextlib.ExitStack], Served],
                 reasons: dict[str, str], window_size: int,
                 guest: GuestMaker = fuse_guest) -> None:
        self.name, self.capabilities = name, capabilities
        self._serve, self._reasons, self._window_size = serve, reasons, window_size
        self._guest = guest
        self._base = tempfile.mkdtemp(prefix=f"pagefs-conformance-{name.split(':')[0]}.")

    def why_not(self, capability: str) -> str:
        return self._reasons.get(capability, super().why_not(capability))

    def start(self, *, read_only: bool = False) -> Target:
        export = tempfile.mkdtemp(dir=self._base)
        os.chmod(export, 0o755)  # the spec's export root
        stack = contextlib.ExitStack()
        try:
            served = self._serve(export, read_only, stack)
        except BaseException:
            stack.close()
            shutil.rmtree(export, ignore_errors=True)
            raise
        return DaemonTarget(self.name, self.capabilities, export, served, stack,
                            read_only, self._window_size, self._guest)

    def close(self) -> None:
        shutil.rmtree(self._base, ignore_errors=True)


def serve_pagefs(export: str, read_only: bool, stack: contextlib.ExitStack,
                 program: tuple[str, ...] | None = None, dispatch: str = "fast",
                 options: tuple[str, ...] = ()) -> Served:
    """pagefs-host on `export` (or `program`, a pagefs-host with a seeded bug), serving
    with its C fast path (`dispatch` fast, its default) or the Python dispatcher alone;
    `options`: more pagefs-host options."""
    from pagefs.impl.client.host_daemon import PAGEFS_HOST, host_daemon
    daemon = stack.enter_context(host_daemon(export, read_only=read_only,
                                             options=("--dispatch", dispatch, *options),
                                             program=program or PAGEFS_HOST))
    return Served(daemon.socket_path, daemon.open_fds, daemon.process, daemon.log)


def pagefs_capabilities() -> frozenset[str]:
    return frozenset({MAPPINGS, PEERS, READ_ONLY, OWN_HANDLES, RAW_NAMES, CONFINED, SPECIAL,
                      RESET, CREDENTIALS})


def PagefsFactory() -> DaemonFactory:  # noqa: N802 (a factory of factories, named as a type)
    return DaemonFactory("pagefs", pagefs_capabilities(), serve_pagefs, {}, WINDOW_SIZE)


def parse_pagefs(spec: str) -> DaemonFactory:
    """`pagefs` (the daemon's C fast path, its default) or `pagefs:python` (every request
    through the Python dispatcher, the fast path's reference): both are judged."""
    _, _, dispatch = spec.partition(":")
    if dispatch in ("", "fast"):
        return PagefsFactory()
    if dispatch != "python":
        raise ValueError(f"pagefs takes 'python' or 'fast', not {dispatch!r}")

    def serve(export: str, read_only: bool, stack: contextlib.ExitStack) -> Served:
        return serve_pagefs(export, read_only, stack, dispatch="python")

    return DaemonFactory("pagefs:python", pagefs_capabilities(), serve, {}, WINDOW_SIZE)


def virtiofsd_factory(cache: str = "auto") -> DaemonFactory:
    from pagefs.impl.client.virtiofsd import CACHE_MODES, Virtiofsd
    if cache not in CACHE_MODES:
        raise ValueError(f"virtiofsd cache mode {cache!r} is not one of {', '.join(CACHE_MODES)}")

    def serve(export: str, read_only: bool, stack: contextlib.ExitStack) -> Served:
        # virtiofsd exits when its one guest leaves: nothing left to count.
        daemon = stack.enter_context(Virtiofsd(export, cache=cache))
        assert daemon.process is not None  # started by entering it
        return Served(daemon.socket_path, None, daemon.process, daemon.log_text)

    reasons = {
        MAPPINGS: "QEMU 7.2's virtiofsd offers no DAX window (FUSE_SETUPMAPPING is ENOSYS)",
        PEERS: "virtiofsd serves exactly one vhost-user connection",
        READ_ONLY: "QEMU 7.2's virtiofsd has no read-only export option",
    }
    return DaemonFactory(f"virtiofsd:cache={cache}",
                         frozenset({OWN_HANDLES, RAW_NAMES, CONFINED, SPECIAL, RESET,
                                    CREDENTIALS}), serve,
                         reasons, 0)


def _cache_mode(spec: str) -> str:
    """The MODE of `NAME[:cache=MODE]`, auto when none is given."""
    _, _, argument = spec.partition(":")
    return argument.removeprefix("cache=") if argument else "auto"


def parse_virtiofsd(spec: str) -> DaemonFactory:
    """`virtiofsd[:cache=MODE]` (MODE none, auto or always; default auto)."""
    return virtiofsd_factory(_cache_mode(spec))


def virtiofsd_rust_factory(cache: str = "auto") -> DaemonFactory:
    from pagefs.impl.client.virtiofsd_rust import CACHE_MODES, RustVirtiofsd, find_rust_virtiofsd
    if cache not in CACHE_MODES:
        raise ValueError(f"virtiofsd-rust cache mode {cache!r} is not one of "
                         f"{', '.join(CACHE_MODES)}")
    find_rust_virtiofsd()  # one line saying how to install it, before any case runs

    def serve(export: str, read_only: bool, stack: contextlib.ExitStack) -> Served:
        daemon = stack.enter_context(RustVirtiofsd(export, cache=cache, readonly=read_only))
        assert daemon.process is not None  # started by entering it
        return Served(daemon.socket_path, None, daemon.process, daemon.log_text)

    reasons = {
        MAPPINGS: "the Rust virtiofsd 1.14 offers no DAX window: it negotiates no SHMEM "
                  "protocol feature and answers FUSE_SETUPMAPPING with ENOSYS",
        PEERS: "virtiofsd serves exactly one vhost-user connection",
    }
    return DaemonFactory(f"virtiofsd-rust:cache={cache}",
                         frozenset({OWN_HANDLES, RAW_NAMES, CONFINED, READ_ONLY,
                                    CREDENTIALS}), serve,
                         reasons, 0)


def parse_virtiofsd_rust(spec: str) -> DaemonFactory:
    """`virtiofsd-rust[:cache=MODE]` (MODE auto, always, never or metadata; default auto)."""
    return virtiofsd_rust_factory(_cache_mode(spec))
