"""pagefs-guest, the command line, against the real pagefs-host."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from pathlib import Path

from pagefs.impl.client.host_daemon import HostDaemon


def run(host: HostDaemon, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pagefs.impl.guest.cli", host.socket_path, *args],
        input=stdin, capture_output=True, timeout=60,
    )


def test_a_session_by_hand(host: HostDaemon, export: Path, tmp_path: Path) -> None:
    assert run(host, "mkdir", "docs").returncode == 0
    assert run(host, "put", "-", "docs/a.txt", stdin=b"hello\n").returncode == 0
    assert (export / "docs" / "a.txt").read_bytes() == b"hello\n"
    assert run(host, "cat", "docs/a.txt").stdout == b"hello\n"
    assert run(host, "ls").stdout == b"docs/\n"
    assert run(host, "ln", "a.txt", "docs/link").returncode == 0
    assert run(host, "readlink", "docs/link").stdout == b"a.txt\n"
    assert run(host, "mv", "docs/a.txt", "b.txt").returncode == 0
    assert run(host, "truncate", "b.txt", "2").returncode == 0
    assert run(host, "stat", "b.txt").stdout.startswith(b"size 2  mode -rw-")
    assert run(host, "get", "b.txt", str(tmp_path / "local")).returncode == 0
    assert (tmp_path / "local").read_bytes() == b"he"
    assert run(host, "rm", "docs/link").returncode == 0
    assert run(host, "rmdir", "docs").returncode == 0
    assert sorted(p.name for p in export.iterdir()) == ["b.txt"]


def test_failures_are_one_line_and_a_nonzero_status(host: HostDaemon, export: Path) -> None:
    (export / "full").mkdir()
    (export / "full" / "x").write_bytes(b"")
    cases = {
        ("cat", "missing"): b"pagefs-guest: cat missing: No such file or directory\n",
        ("rmdir", "full"): b"pagefs-guest: rmdir full: Directory not empty\n",
        ("cat", "full"): b"pagefs-guest: cat full: Is a directory\n",
    }
    for args, message in cases.items():
        result = run(host, *args)
        assert result.returncode != 0, args
        assert result.stderr.startswith(message) and result.stderr.count(b"\n") == 1, result


def test_an_absent_daemon_is_a_one_line_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pagefs.impl.guest.cli", str(tmp_path / "no.sock"), "ls"],
        capture_output=True, timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr == b"pagefs-guest: ls: No such file or directory\n"


def test_a_socket_that_is_no_daemon_is_a_one_line_error(tmp_path: Path) -> None:
    path = str(tmp_path / "impostor.sock")
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen()

    def answer_with_junk() -> None:
        for _ in range(2):
            conn, _ = server.accept()
            with conn:
                conn.recv(4096)
                conn.sendall(b"\x01" * 64)

    responder = threading.Thread(target=answer_with_junk, daemon=True)
    responder.start()
    try:
        for args in (["ls"], ["cat", "x"]):
            result = subprocess.run(
                [sys.executable, "-m", "pagefs.impl.guest.cli", path, *args],
                capture_output=True, timeout=60,
            )
            assert result.returncode == 1, result
            assert result.stderr.startswith(f"pagefs-guest: {' '.join(args)}: ".encode())
            assert result.stderr.count(b"\n") == 1, result
    finally:
        server.close()
        responder.join(timeout=10)


def test_usage_errors_are_one_line(host: HostDaemon) -> None:
    for args, message in (
        (("frob",), b"pagefs-guest: argument command: invalid choice: 'frob'"),
        (("cat",), b"pagefs-guest: usage: cat PATH (see --help)\n"),
        (("ls", "a", "b"), b"pagefs-guest: usage: ls [PATH] (see --help)\n"),
        (("truncate", "a.txt", "lots"), b"pagefs-guest: truncate: not a size: 'lots'"),
        (("truncate", "a.txt", "-5"), b"pagefs-guest: truncate: not a size: '-5'"),
        (("truncate", "a.txt", "5Q"), b"pagefs-guest: truncate: not a size: '5Q'"),
        (("--window-size", "12345", "ls"), b"pagefs-guest: argument --window-size: window size "
         b"12345 is not a positive multiple of 2 MiB"),
        (("--window-size", "lots", "ls"), b"pagefs-guest: argument --window-size: not a size"),
    ):
        result = run(host, *args)
        assert result.returncode == 2
        assert result.stderr.startswith(message) and result.stderr.count(b"\n") == 1, result


def test_sizes_take_units_and_a_window_may_be_none(host: HostDaemon, export: Path) -> None:
    (export / "s.txt").write_bytes(b"")
    for window in ("0", "4M", "4194304"):
        assert run(host, "--window-size", window, "truncate", "s.txt", "2K").returncode == 0
        assert (export / "s.txt").stat().st_size == 2048
        (export / "s.txt").write_bytes(b"")
