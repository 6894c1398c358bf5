"""Fault containment: a guarded copy that touches a page the file no longer has, or an
unmapped window range, ends short with the process alive; other faults still crash."""

from __future__ import annotations

import mmap
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

from pagefs.impl.guest import safemem

PAGE = mmap.PAGESIZE


def _mapped_file(path: Path, pages: int) -> tuple[int, mmap.mmap]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    os.write(fd, bytes(range(256)) * (pages * PAGE // 256))
    return fd, mmap.mmap(fd, pages * PAGE, mmap.MAP_SHARED)


def test_read_beyond_truncated_end_is_short_and_page_exact(tmp_path: Path) -> None:
    fd, m = _mapped_file(tmp_path / "f", 4)
    address = safemem.buffer_address(m)
    os.ftruncate(fd, PAGE + 100)
    buf = bytearray(4 * PAGE)
    copied = safemem.read_into(address, buf)
    # The last partial page stays readable: its tail past the end reads as zero.
    assert copied == 2 * PAGE
    assert bytes(buf[:100]) == bytes(range(100))
    assert bytes(buf[PAGE + 100 : 2 * PAGE]) == bytes(PAGE - 100)
    # A read that starts on a vanished page copies nothing.
    assert safemem.read(address + 3 * PAGE + 5, 10) == b""
    os.close(fd)


def test_read_returns_a_bytes_of_its_own_each_time(tmp_path: Path) -> None:
    """read() fills a new bytes object in place: never one another caller holds."""
    fd, m = _mapped_file(tmp_path / "f", 2)
    address = safemem.buffer_address(m)
    first = safemem.read(address, 2 * PAGE)
    m[0:4] = b"NEW!"
    assert first[:4] == bytes(range(4)) and safemem.read(address, 2 * PAGE)[:4] == b"NEW!"
    assert safemem.read(address, 1) == b"N" and safemem.read(address, 0) == b""
    assert safemem.read(address, 2) == b"NE" and bytes(2) == b"\0\0" and bytes(1) == b"\0"
    os.close(fd)


def test_write_beyond_truncated_end_is_short_and_file_unchanged(tmp_path: Path) -> None:
    fd, m = _mapped_file(tmp_path / "f", 3)
    address = safemem.buffer_address(m)
    os.ftruncate(fd, PAGE)
    assert safemem.write_from(address + PAGE - 4, b"\xff" * 8) == 4
    assert os.fstat(fd).st_size == PAGE
    assert os.pread(fd, 4, PAGE - 4) == b"\xff" * 4
    os.close(fd)


def test_unmapped_window_range_is_contained_only_when_registered() -> None:
    window = mmap.mmap(-1, 4 * PAGE, prot=0)
    base = safemem.buffer_address(window)
    safemem.register_window(base, 4 * PAGE)
    try:
        assert safemem.read(base + PAGE, 64) == b""
        assert safemem.write_from(base, b"x") == 0
    finally:
        safemem.unregister_window(base)


def test_faulting_threads_leave_other_threads_alone(tmp_path: Path) -> None:
    fd, m = _mapped_file(tmp_path / "f", 8)
    address = safemem.buffer_address(m)
    os.ftruncate(fd, 2 * PAGE)
    good = bytearray(os.pread(fd, 2 * PAGE, 0))
    results: list[tuple[str, int]] = []
    lock = threading.Lock()

    def faulting() -> None:
        for _ in range(200):
            n = safemem.read_into(address, bytearray(8 * PAGE))
            with lock:
                results.append(("fault", n))

    def clean() -> None:
        for _ in range(200):
            buf = bytearray(2 * PAGE)
            n = safemem.read_into(address, buf)
            with lock:
                results.append(("clean", n if buf == good else -1))

    threads = [threading.Thread(target=f) for f in (faulting, clean, faulting, clean)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {r for r in results if r[0] == "fault"} == {("fault", 2 * PAGE)}
    assert {r for r in results if r[0] == "clean"} == {("clean", 2 * PAGE)}
    os.close(fd)


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-X", "faulthandler", "-c", textwrap.dedent(code)],
        capture_output=True, text=True, timeout=60,
    )


def test_fault_outside_a_guarded_copy_reaches_the_previous_handler(tmp_path: Path) -> None:
    # An unguarded load of a vanished page is a real bug: faulthandler (installed
    # before safemem) must still report it and the process must die of SIGBUS.
    result = _run(
        f"""
        import ctypes, mmap, os
        from pagefs.impl.guest import safemem
        fd = os.open({str(tmp_path / 'g')!r}, os.O_RDWR | os.O_CREAT)
        os.ftruncate(fd, 3 * mmap.PAGESIZE)
        m = mmap.mmap(fd, 3 * mmap.PAGESIZE)
        os.ftruncate(fd, 0)
        assert safemem.read(safemem.buffer_address(m), 10) == b""
        ctypes.string_at(safemem.buffer_address(m), 10)
        """
    )
    assert result.returncode == -7, result
    assert "Bus error" in result.stderr


def test_segfault_outside_any_window_is_not_swallowed() -> None:
    result = _run(
        """
        import mmap
        from pagefs.impl.guest import safemem
        hole = mmap.mmap(-1, mmap.PAGESIZE, prot=0)
        safemem.read(safemem.buffer_address(hole), 10)
        """
    )
    assert result.returncode == -11, result
    assert "Segmentation fault" in result.stderr


def test_a_handler_installed_later_neither_breaks_containment_nor_is_bypassed(tmp_path):
    # faulthandler enabled after safemem loaded (pytest does this when a conftest
    # imports the driver): guarded copies still end short, real crashes still report.
    result = _run(
        f"""
        import ctypes, faulthandler, mmap, os
        from pagefs.impl.guest import safemem
        faulthandler.disable()
        faulthandler.enable()
        fd = os.open({str(tmp_path / 'g')!r}, os.O_RDWR | os.O_CREAT)
        os.ftruncate(fd, 3 * mmap.PAGESIZE)
        m = mmap.mmap(fd, 3 * mmap.PAGESIZE)
        os.ftruncate(fd, 0)
        assert safemem.read(safemem.buffer_address(m), 10) == b""
        print("contained", flush=True)
        ctypes.string_at(safemem.buffer_address(m), 10)
        """
    )
    assert result.returncode == -7, result
    assert result.stdout == "contained\n"
    assert "Fatal Python error: Bus error" in result.stderr


def test_the_handler_is_installed_by_the_first_guarded_copy_not_at_import() -> None:
    # /proc/self/status SigCgt: the signals this process catches (bit n-1 for signal n)
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(
            """
            import mmap, signal
            def caught():
                line = next(l for l in open("/proc/self/status") if l.startswith("SigCgt:"))
                mask = int(line.split()[1], 16)
                return [bool(mask >> (s - 1) & 1) for s in (signal.SIGBUS, signal.SIGSEGV)]
            from pagefs.impl.guest import safemem
            print(caught())
            m = mmap.mmap(-1, mmap.PAGESIZE)
            assert safemem.read(safemem.buffer_address(m), 4) == bytes(4)
            print(caught())
            """)],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result
    assert result.stdout.split("\n")[:2] == ["[False, False]", "[True, True]"]
