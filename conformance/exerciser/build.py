"""Compile fsx.c once per source text into ~/.cache/pagefs/exerciser/<hash>/fsx."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile

SOURCE = os.path.join(os.path.dirname(__file__), "fsx.c")
FLAGS = ("-O2", "-static", "-Wall", "-Wextra", "-Werror")


class BuildError(RuntimeError):
    """The exerciser could not be compiled (no compiler, no static libc, a bad source)."""


def cache_root() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "pagefs", "exerciser")


def binary() -> str:
    """The path of a static fsx built from this source, compiling it when missing.

    Keyed by the source's and flags' hash, so an edited fsx.c is never served stale.
    """
    with open(SOURCE, "rb") as f:
        digest = hashlib.sha256(f.read() + " ".join(FLAGS).encode()).hexdigest()[:16]
    target = os.path.join(cache_root(), digest, "fsx")
    if os.access(target, os.X_OK):
        return target
    compiler = shutil.which("gcc")
    if compiler is None:
        raise BuildError("gcc not found: install it (scripts/install-system-deps) to build "
                         "the exerciser")
    os.makedirs(os.path.dirname(target), exist_ok=True)
    # Build beside the target and rename, so two builders at once never see half a binary.
    fd, partial = tempfile.mkstemp(dir=os.path.dirname(target), prefix=".fsx-")
    os.close(fd)
    try:
        done = subprocess.run([compiler, *FLAGS, "-o", partial, SOURCE],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise BuildError(f"gcc could not build the exerciser: {done.stderr.strip()}")
        os.chmod(partial, 0o755)
        os.replace(partial, target)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
    return target
