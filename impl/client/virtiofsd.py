"""Launcher for QEMU's C virtiofsd, a third-party vhost-user back-end for virtio-fs.

    with Virtiofsd(shared_dir, cache="none") as d:
        frontend = VhostUserFrontend.connect(d.socket_path, window_size=0)

virtiofsd serves one front-end connection and exits when it closes; `stop()` (or leaving
the `with` block) ends the process if it still runs and removes the socket.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from typing import IO

from pagefs.impl.client.child import die_with_parent
from pagefs.impl.transport.unix_socket import is_listening

DEFAULT_BINARY = "/usr/lib/qemu/virtiofsd"
DEBIAN_PACKAGE = "qemu-system-common"
CACHE_MODES = ("none", "auto", "always")
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0


class VirtiofsdError(RuntimeError):
    """virtiofsd is missing or did not come up; the message says what to do."""


def find_virtiofsd(binary: str | None = None) -> str:
    """The virtiofsd binary (PAGEFS_VIRTIOFSD overrides the default path)."""
    path = binary or os.environ.get("PAGEFS_VIRTIOFSD") or DEFAULT_BINARY
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise VirtiofsdError(
            f"virtiofsd not found at {path}: install the Debian package {DEBIAN_PACKAGE} "
            f"(apt-get install {DEBIAN_PACKAGE}) or set PAGEFS_VIRTIOFSD"
        )
    return path


class Virtiofsd:
    """One virtiofsd process exporting `shared_dir` on a fresh socket."""

    CACHE_MODES: tuple[str, ...] = CACHE_MODES
    NAME = "QEMU's virtiofsd"

    @staticmethod
    def find(binary: str | None) -> str:
        return find_virtiofsd(binary)

    def __init__(
        self,
        shared_dir: str | os.PathLike,
        *,
        cache: str = "none",
        socket_path: str | None = None,
        sandbox: str = "chroot",
        binary: str | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        if cache not in self.CACHE_MODES:
            raise ValueError(
                f"cache mode {cache!r} is not one of {', '.join(self.CACHE_MODES)}")
        if not os.path.isdir(shared_dir):
            raise VirtiofsdError(f"shared directory {shared_dir} does not exist")
        self.binary = self.find(binary)
        self.shared_dir = os.fspath(shared_dir)
        self.cache = cache
        self.sandbox = sandbox
        self._own_dir = None if socket_path else tempfile.mkdtemp(prefix="pagefs-virtiofsd-")
        # absolute, because /proc/net/unix names a socket by the path it was bound to
        self.socket_path = os.path.abspath(
            socket_path or os.path.join(self._own_dir or "", "vhost-user.sock")
        )
        self.extra_args = extra_args
        self.process: subprocess.Popen | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> Virtiofsd:
        """Starts virtiofsd and waits until its socket accepts connections."""
        if os.geteuid() != 0:
            raise VirtiofsdError(f"{self.NAME} needs root (it sandboxes itself): run as root")
        self._log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            self.command(), stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log,
            preexec_fn=die_with_parent(),  # no orphan if our process is killed
        )
        deadline = time.monotonic() + START_TIMEOUT
        # a socket file exists from bind(); connecting before listen() would be refused
        while not is_listening(self.socket_path):
            if self.process.poll() is not None:
                raise VirtiofsdError(f"virtiofsd exited at start-up: {self.log_text()}")
            if time.monotonic() > deadline:
                self.stop()
                raise VirtiofsdError(f"virtiofsd made no socket within {START_TIMEOUT} s")
            time.sleep(0.01)
        return self

    def command(self) -> list[str]:
        """The command line that starts this virtiofsd."""
        return [
            self.binary,
            f"--socket-path={self.socket_path}",
            "-o",
            f"source={self.shared_dir}",
            "-o",
            f"cache={self.cache}",
            # virtiofsd's default namespace sandbox needs privileges some containers lack;
            # chroot works wherever root does and still confines it to the shared directory
            "-o",
            f"sandbox={self.sandbox}",
            *self.extra_args,
        ]

    def log_text(self) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read().decode(errors="replace").strip()

    def stop(self) -> None:
        """Ends the process (SIGTERM, then SIGKILL) and removes the socket. Idempotent."""
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
            self.process = None
        if os.path.exists(self.socket_path):
            os.unlink(self.socket_path)
        if self._own_dir is not None:
            shutil.rmtree(self._own_dir, ignore_errors=True)
            self._own_dir = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Virtiofsd:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
