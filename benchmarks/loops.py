"""The benchmarks' C loops (_loops.c), compiled by cffi once per source text into
~/.cache/pagefs/bench-loops/<hash>/ and imported from there.

Every ratio of raw memory speed (native mapping vs DAX window, memfd vs pagefs word,
eventfd vs polling) runs one of these loops on both sides, so the ratio measures the
memory or the notification, not the Python around it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import tempfile
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

SOURCE = Path(__file__).with_name("_loops.c")
CDEF = """
uint64_t copy_offsets(char *dst, char *const *bases, unsigned shift, const uint64_t *offsets,
                      size_t count, size_t chunk);
int spin_rounds(volatile uint64_t *word, uint64_t first, uint64_t rounds, int initiator,
                uint64_t *samples_ns, uint64_t deadline);
int eventfd_rounds(int ping, int pong, uint64_t rounds, int initiator, uint64_t *samples_ns);
"""
MODULE = "_pagefs_bench_loops"


def _cache_dir(digest: str) -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "pagefs" / "bench-loops" / digest


@cache
def loops() -> ModuleType:
    """The compiled module (its `ffi` and `lib`), built on first use."""
    source = SOURCE.read_text()
    digest = hashlib.sha256((CDEF + source).encode()).hexdigest()[:16]
    target = _cache_dir(digest)
    built = sorted(target.glob(f"{MODULE}*.so"))
    if not built:
        from cffi import FFI

        builder = FFI()
        builder.cdef(CDEF)
        builder.set_source(MODULE, source, extra_compile_args=["-O2", "-Wall", "-Wextra"])
        target.mkdir(parents=True, exist_ok=True)
        # Build aside and rename, so two benchmarks starting at once never load half a file.
        with tempfile.TemporaryDirectory(dir=target) as work:
            library = Path(builder.compile(tmpdir=work))
            os.replace(library, target / library.name)
        built = sorted(target.glob(f"{MODULE}*.so"))
    spec = importlib.util.spec_from_file_location(MODULE, built[0])
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules.setdefault(MODULE, module)
    return module


def address(buffer: Any) -> int:
    """The address of a writable or read-only buffer (mmap, memoryview, bytearray)."""
    ffi = loops().ffi
    return int(ffi.cast("uintptr_t", ffi.from_buffer(buffer)))
