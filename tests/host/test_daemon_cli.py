"""pagefs-host as a user runs it: options, one-line errors, the socket's life, signals,
--max-guests, and connections that end early or speak nonsense."""

from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import subprocess
from pathlib import Path

import pytest
from pagefs_waits import assert_child_dies_with_holder, assert_next_guest_taken, wait_until

from pagefs.impl.client.fuse_client import FuseClient
from pagefs.impl.client.host_daemon import PAGEFS_HOST, HostDaemonError, command, host_daemon
from pagefs.impl.transport.unix_socket import is_listening

from .conftest import WINDOW_SIZE


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([*PAGEFS_HOST, *args], capture_output=True, stdin=subprocess.DEVNULL,
                          text=True, timeout=timeout)


def one_line_error(result: subprocess.CompletedProcess, code: int, fragment: str) -> None:
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("pagefs-host: error:") and fragment in lines[0], lines[0]


def test_print_capabilities_is_what_libvirt_reads() -> None:
    result = run_cli("--print-capabilities")
    assert result.returncode == 0
    caps = json.loads(result.stdout)
    assert caps["type"] == "fs"
    assert "separate-options" in caps["features"]


@pytest.mark.parametrize(("args", "fragment"), [
    ((), "--socket-path and --shared-dir required"),
    (("--socket-path", "/tmp/x.sock"), "--shared-dir required"),
    (("--shared-dir", "/tmp"), "--socket-path required"),
    (("--bogus",), "unrecognized arguments: --bogus"),
    (("--max-guests", "0"), "--max-guests"),
    (("--max-guests", "many"), "--max-guests"),
    (("--log-level", "loud"), "--log-level"),
    (("--window-size", "1X"), "--window-size"),
    (("--window-size", "3"), "not a positive multiple of 2 MiB"),
    (("--window-size", "3M"), "not a positive multiple of 2 MiB"),
    (("--window-size", "0"), "not a positive multiple of 2 MiB"),
    (("--window-size", "99999999999999999999999"), "no larger than 2^63"),
    (("--window-size=-2M",), "not a size"),
    (("--handshake-timeout", "0"), "--handshake-timeout"),
    (("--handshake-timeout", "nan"), "--handshake-timeout"),
    (("--tag", ""), "a tag is 1 to 36 bytes"),
    (("--tag", "t" * 37), "a tag is 1 to 36 bytes"),
])
def test_bad_options_get_one_line_and_exit_2(args, fragment: str) -> None:
    one_line_error(run_cli(*args), 2, fragment)


def test_socket_path_too_long_says_why(tmp_path: Path) -> None:
    sock = str(tmp_path / ("s" * 120))  # beyond sun_path's 108 bytes
    result = run_cli("--socket-path", sock, "--shared-dir", str(tmp_path))
    one_line_error(result, 1, "path too long")
    assert "None" not in result.stderr


def test_bad_shared_dir(tmp_path: Path) -> None:
    sock = str(tmp_path / "s.sock")
    one_line_error(run_cli("--socket-path", sock, "--shared-dir", str(tmp_path / "missing")), 1,
                   "No such file or directory")
    (tmp_path / "plain").write_text("x")
    one_line_error(run_cli("--socket-path", sock, "--shared-dir", str(tmp_path / "plain")), 1,
                   "Not a directory")
    assert not os.path.lexists(sock)


def test_socket_path_that_is_not_a_socket_is_left_alone(tmp_path: Path) -> None:
    precious = tmp_path / "precious"
    precious.write_text("keep me")
    one_line_error(run_cli("--socket-path", str(precious), "--shared-dir", str(tmp_path)), 1,
                   "not a socket")
    assert precious.read_text() == "keep me"
    one_line_error(run_cli("--socket-path", str(tmp_path / "no" / "s.sock"),
                           "--shared-dir", str(tmp_path)), 1, "No such file or directory")


def test_a_live_listener_is_never_disturbed(tmp_path: Path) -> None:
    with host_daemon(str(tmp_path)) as host:
        one_line_error(run_cli("--socket-path", host.socket_path, "--shared-dir", str(tmp_path)),
                       1, "in use by a live listener")
        assert is_listening(host.socket_path)
        assert "connected" not in host.log()  # no probe connection reached it


def test_a_stale_socket_is_replaced(tmp_path: Path) -> None:
    path = str(tmp_path / "stale.sock")
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(path)
    dead.close()  # the file stays, nobody listens: what a killed daemon leaves
    proc = subprocess.Popen(command(path, str(tmp_path)), stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: is_listening(path), "the socket", process=proc)
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert not os.path.lexists(path)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signals_stop_cleanly_and_close_guests(tmp_path: Path, signum: int) -> None:
    with host_daemon(str(tmp_path)) as host:
        guest = socket.socket(socket.AF_UNIX)
        guest.connect(host.socket_path)
        wait_until(lambda: "guest 1 connected" in host.log(), "guest 1 connected", process=host)
        assert host.stop(signum) == 0  # and the socket is gone
        assert guest.recv(1) == b""  # the daemon closed our connection
        guest.close()
        assert "stopped" in host.log()


def test_max_guests_refuses_extra_connections(tmp_path: Path) -> None:
    with host_daemon(str(tmp_path), max_guests=2) as host:
        guests = [socket.socket(socket.AF_UNIX) for _ in range(3)]
        for guest in guests[:2]:
            guest.connect(host.socket_path)
        wait_until(lambda: "guest 2 connected" in host.log(), "guest 2 connected", process=host)
        guests[2].connect(host.socket_path)
        assert guests[2].recv(1) == b""
        assert "refused connection" in host.log()
        guests[0].close()
        wait_until(lambda: "guest 1 disconnected" in host.log(), "guest 1 to go", process=host)
        late = socket.socket(socket.AF_UNIX)
        late.connect(host.socket_path)  # a slot is free again
        wait_until(lambda: "guest 3 connected" in host.log(), "guest 3 connected", process=host)
        for guest in (*guests[1:], late):
            guest.close()


@pytest.mark.parametrize("workers", ["process", "thread"])
def test_a_stop_ends_a_wait_for_a_max_guests_slot(tmp_path: Path, workers: str) -> None:
    """A connection that finds every slot taken waits --slot-grace for one in the accept
    loop; a SIGTERM meanwhile stops the daemon then, not when the wait is over (an hour
    here: without the stop pipe watched, stop() gives up and kills it), and the waiting
    connection is closed, not refused for want of a slot."""
    options = ("--workers", workers, "--slot-grace", "3600", "--handshake-timeout", "3600")
    with host_daemon(str(tmp_path), max_guests=1, log_level="debug",
                     options=options) as host, \
            socket.socket(socket.AF_UNIX) as holder, socket.socket(socket.AF_UNIX) as waiter:
        holder.connect(host.socket_path)
        wait_until(lambda: "guest 1 connected" in host.log(), "guest 1 connected", process=host)
        waiter.connect(host.socket_path)
        wait_until(lambda: "waits up to 3600 s for a --max-guests slot" in host.log(),
                   "the wait for a slot", process=host)
        assert host.stop(timeout=60) == 0
        assert waiter.recv(1) == b""
        assert "refused connection" not in host.log()


def test_a_silent_connection_loses_its_slot_at_the_handshake_deadline(tmp_path: Path) -> None:
    """A connection that never speaks would hold the only --max-guests slot forever;
    after --handshake-timeout it is closed, with a log line, and a real guest gets in."""
    with host_daemon(str(tmp_path), max_guests=1,
                     options=("--handshake-timeout", "0.3")) as host:
        with socket.socket(socket.AF_UNIX) as silent:
            silent.connect(host.socket_path)
            assert silent.recv(1) == b""  # closed by the daemon, not by us
        assert "vhost-user handshake not done within 0.3 s" in host.log()
        assert_next_guest_taken(host, host.socket_path, 2)  # the slot is free again


def test_nonsense_on_the_wire_drops_only_that_guest(tmp_path: Path) -> None:
    # the steady guest never speaks: no handshake deadline may close it meanwhile
    with host_daemon(str(tmp_path), options=("--handshake-timeout", "3600")) as host:
        steady = socket.socket(socket.AF_UNIX)
        steady.connect(host.socket_path)
        wait_until(lambda: "guest 1 connected" in host.log(), "guest 1 connected", process=host)
        baseline = host.open_fds()
        for junk in (b"\xff" * 12, b"\x01\x00\x00\x00\x01\x00\x00\x00\xff\xff\xff\xff", b"x"):
            rogue = socket.socket(socket.AF_UNIX)
            rogue.connect(host.socket_path)
            rogue.sendall(junk)
            rogue.shutdown(socket.SHUT_WR)
            rogue.recv(1)
            rogue.close()
        wait_until(lambda: host.log().count("disconnected") + host.log().count("dropped") >= 3,
                   "three rogue guests to go", process=host)
        wait_until(lambda: host.open_fds() == baseline, "RECLAIM", process=host)
        assert host.alive()
        steady.close()


def test_launcher_reports_a_daemon_that_cannot_start(tmp_path: Path) -> None:
    with pytest.raises(HostDaemonError, match="Not a directory"):
        (tmp_path / "file").write_text("x")
        with host_daemon(str(tmp_path / "file")):
            pass


def test_an_inherited_listening_socket_as_libvirt_passes_it(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"via --fd")
    path = str(tmp_path / "libvirt.sock")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen()
    fd = listener.fileno()
    proc = subprocess.Popen([*PAGEFS_HOST, f"--fd={fd}", "--shared-dir", str(tmp_path),
                             "--cache", "never"], pass_fds=[fd], stderr=subprocess.PIPE,
                            text=True)
    listener.close()  # the daemon holds it now, as virtiofsd does under libvirt
    try:
        with FuseClient.connect(path, window_size=WINDOW_SIZE) as guest:
            entry = guest.lookup(1, b"file")
            fh = guest.open(entry.nodeid, os.O_RDONLY).fh
            assert guest.read(entry.nodeid, fh, 0, 100) == b"via --fd"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert os.path.exists(path)  # the inherited socket's file is its owner's to remove
    os.unlink(path)


@pytest.mark.parametrize(("args", "code", "fragment"), [
    (("--fd", "1", "--socket-path", "/tmp/x.sock", "--shared-dir", "/tmp"), 2, "exclude"),
    (("--fd", "x", "--shared-dir", "/tmp"), 2, "not a descriptor"),
    (("--fd", "0", "--shared-dir", "/tmp"), 1, "not an open socket"),
    (("--cache", "sometimes", "--socket-path", "/tmp/x.sock", "--shared-dir", "/tmp"), 2,
     "--cache"),
])
def test_bad_inherited_sockets_and_cache_modes(args, code: int, fragment: str) -> None:
    one_line_error(run_cli(*args), code, fragment)


@pytest.mark.parametrize(("mode", "open_flags", "timeout"), [
    (None, 0, 0), ("never", 1, 0), ("always", 2, 86400)])  # FOPEN_DIRECT_IO, _KEEP_CACHE
def test_cache_modes_reach_the_guest(tmp_path: Path, mode: str | None, open_flags: int,
                                     timeout: int) -> None:
    (tmp_path / "file").write_bytes(b"data")
    options = ("--cache", mode) if mode else ()
    with host_daemon(str(tmp_path), options=options) as host:
        with FuseClient.connect(host.socket_path, window_size=WINDOW_SIZE) as guest:
            entry = guest.lookup(1, b"file")
            assert (entry.entry_valid, entry.attr_valid) == (timeout, timeout)
            assert guest.open(entry.nodeid, os.O_RDWR).open_flags == open_flags
        assert f"--cache {mode or 'auto'}" in host.log()


def test_sigterm_delivered_to_a_guest_thread_still_stops_the_daemon(tmp_path: Path) -> None:
    """The kernel may hand a process-directed signal to any thread; aim it at a guest's
    (--workers thread: the guests' threads are the daemon's own)."""
    tgkill = ctypes.CDLL(None, use_errno=True).tgkill
    with host_daemon(str(tmp_path), options=("--workers", "thread")) as host:
        with FuseClient.connect(host.socket_path, window_size=WINDOW_SIZE):
            threads = {int(t) for t in os.listdir(f"/proc/{host.pid}/task")} - {host.pid}
            assert threads  # the guest's connection and queue threads
            assert tgkill(host.pid, min(threads), signal.SIGTERM) == 0
            assert host.wait() == 0  # and the socket is gone
        assert "stopped" in host.log()


HOLD_HOST = """
import sys, time
from pagefs.impl.client.host_daemon import host_daemon
with host_daemon(sys.argv[1]) as host:
    print(host.pid, flush=True)
    time.sleep(3600)
"""


def test_daemon_dies_with_the_process_holding_it(tmp_path: Path) -> None:
    """SIGTERM to the holder of host_daemon() runs no cleanup there: the kernel's
    parent-death signal must stop pagefs-host rather than leave it serving with ppid 1."""
    assert_child_dies_with_holder(HOLD_HOST, str(tmp_path))
