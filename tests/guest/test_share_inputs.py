"""Any input to the Share API, however malformed, ends in a result or an OSError
with an errno: never another exception, a crash or a hang (real daemon, real socket)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pagefs.impl.guest.share import Share

paths = st.lists(st.sampled_from(["a", "b", "..", ".", "", "é", "x\0y", "l", "a" * 300]),
                 max_size=4).map("/".join)
offsets = st.one_of(st.integers(-3, 3 * 4096), st.integers(-(1 << 70), 1 << 70))
sizes = st.one_of(st.integers(-2, 9000), st.integers(-(1 << 70), 1 << 70))
modes = st.one_of(st.integers(0, 0o7777), st.integers(-(1 << 40), 1 << 40))
flags = st.one_of(st.sampled_from([os.O_RDONLY, os.O_WRONLY, os.O_RDWR, os.O_RDWR | os.O_CREAT,
                                   os.O_WRONLY | os.O_APPEND, os.O_RDWR | os.O_TRUNC, 3]),
                  st.integers(-(1 << 40), 1 << 40))

calls = st.one_of(
    st.tuples(st.just("open"), paths, flags, modes),
    st.tuples(st.just("mkdir"), paths, modes),
    st.tuples(st.just("rmdir"), paths),
    st.tuples(st.just("unlink"), paths),
    st.tuples(st.just("rename"), paths, paths),
    st.tuples(st.just("symlink"), paths, paths),
    st.tuples(st.just("readlink"), paths),
    st.tuples(st.just("listdir"), paths),
    st.tuples(st.just("stat"), paths),
    st.tuples(st.just("truncate"), paths, sizes),
    st.tuples(st.just("pread"), sizes, offsets),
    st.tuples(st.just("pwrite"), st.binary(max_size=5000), offsets),
    st.tuples(st.just("mmap"), offsets, sizes, st.booleans(), offsets, st.binary(max_size=64)),
)


def _apply(share: Share, handles: list, call: tuple) -> None:
    name, *args = call
    if name == "open":
        handles.append(share.open(*args))
    elif name in ("pread", "pwrite", "mmap"):
        if not handles:
            return
        handle = handles[-1]
        if name == "pread":
            share.pread(handle, *args)
        elif name == "pwrite":
            share.pwrite(handle, args[0], args[1])
        else:
            offset, length, writable, position, data = args
            with share.mmap(handle, offset, length, writable) as m:
                if 0 <= position < len(m):
                    m.read(position, len(data))
                    if writable:
                        m.write(position, data[: len(m) - position])
    else:
        getattr(share, name)(*args)


def _is(path: Path, kind: str) -> bool:
    if path.is_symlink():
        return kind == "symlink"
    return path.is_dir() if kind == "dir" else path.is_file() and kind == "file"


def _remove(path: Path) -> None:
    """Whatever is at `path`, if anything."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.is_symlink() or path.exists():
        path.unlink()


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(calls, min_size=1, max_size=8))
def test_malformed_calls_end_in_oserror(share: Share, export: Path, program: list) -> None:
    # an earlier example's renames, mkdirs and unlinks may have left any kind of file
    # at each name: each is made what it starts as again
    if not _is(export / "a", "dir"):
        _remove(export / "a")
        (export / "a").mkdir()
    if not _is(export / "b", "file"):
        _remove(export / "b")
    (export / "b").write_bytes(b"b" * 10000)
    if not _is(export / "l", "symlink"):
        _remove(export / "l")
        (export / "l").symlink_to("a")
    handles: list = []
    try:
        for call in program:
            try:
                _apply(share, handles, call)
            except OSError:
                pass
    finally:
        for handle in handles:
            handle.close()
