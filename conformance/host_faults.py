"""Seeded bugs in pagefs-host itself, for judging the suite on the host layer.

`python -m pagefs.conformance.host_faults FAULT <pagefs-host options>` is pagefs-host
with one method of its guest session (impl/host/passthrough.py) wrong, patched in before
the daemon starts; everything else is the real daemon on its real socket. The target
`broken_host(FAULT)` runs it for every case, as the `pagefs` target runs pagefs-host.
(A read-only export's checks are not seeded here: the daemon serves it from a read-only
view, so a missing check is still EROFS from the kernel and no request can show it.)

    short-read        READ stops at the next page boundary (a short count inside the file)
    forget-ignored    FORGET drops nothing: a forgotten nodeid still answers
    release-leaks     RELEASE leaves a descriptor of the file open (run with --workers thread)
    chmod-ignored     SETATTR of a mode changes nothing (and says it did)
    rename-flags-lost RENAME drops its flags: NOREPLACE replaces, EXCHANGE moves one way
    map-ignores-mode  a writable mapping is granted through a read-only handle
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
from collections.abc import Callable
from typing import Any

from pagefs.conformance.targets.daemon import WINDOW_SIZE as PAGEFS_WINDOW
from pagefs.conformance.targets.daemon import (
    DaemonFactory,
    Served,
    pagefs_capabilities,
    serve_pagefs,
)

PAGE = 4096


def _short_read(original: Callable[..., bytes]) -> Callable[..., bytes]:
    def read(self: Any, fh: int, offset: int, size: int) -> bytes:
        to_page = PAGE - offset % PAGE if offset >= 0 else size
        return original(self, fh, offset, min(size, to_page))
    return read


def _forget_ignored(original: Callable[..., None]) -> Callable[..., None]:
    def forget(self: Any, nodeid: int, nlookup: int) -> None:
        return None
    return forget


def _release_leaks(original: Callable[..., None]) -> Callable[..., None]:
    def release(self: Any, fh: int) -> None:
        os.dup(self._handle(fh).fd)  # the bug: the handle's file stays open, for good
        original(self, fh)  # an unknown handle is still EBADF
    return release


def _chmod_ignored(original: Callable[..., Any]) -> Callable[..., Any]:
    def setattr(self: Any, nodeid: int, fh: int | None, **changes: Any) -> Any:
        changes["mode"] = None
        return original(self, nodeid, fh, **changes)
    return setattr


def _rename_flags_lost(original: Callable[..., None]) -> Callable[..., None]:
    def rename(self: Any, parent: int, name: bytes, newparent: int, newname: bytes,
               flags: int = 0) -> None:
        original(self, parent, name, newparent, newname, 0)
    return rename


def _map_ignores_mode(original: Callable[..., Any]) -> Callable[..., Any]:
    def grant(self: Any, handle: Any, foffset: int, length: int, writable: bool,
              moffset: int) -> Any:
        if writable:  # the bug: the handle's access mode is taken to be read-write
            handle = dataclasses.replace(handle, flags=(handle.flags & ~os.O_ACCMODE) | os.O_RDWR)
        return original(self, handle, foffset, length, writable, moffset)
    return grant


# fault -> (the GuestSession method it replaces, the broken method made from the real one,
#           the property it should fail)
HOST_FAULTS: dict[str, tuple[str, Callable[[Any], Any], str]] = {
    "short-read": ("read", _short_read, "COH-READ"),
    "forget-ignored": ("forget", _forget_ignored, "NODEID"),
    "release-leaks": ("release", _release_leaks, "RECLAIM"),
    "chmod-ignored": ("setattr", _chmod_ignored, "COH-META"),
    "rename-flags-lost": ("rename", _rename_flags_lost, "NAMESPACE"),
    "map-ignores-mode": ("_grant", _map_ignores_mode, "ACCESS-MODE"),
}


def _patch(fault: str) -> None:
    from pagefs.impl.host.passthrough import GuestSession
    method, broken, _prop = HOST_FAULTS[fault]
    setattr(GuestSession, method, broken(getattr(GuestSession, method)))


# pagefs-host options a fault needs to show. A worker process's descriptors close when its
# guest leaves, so a descriptor leak outlives its guest (RECLAIM) only where one process
# serves every guest: the thread workers.
FAULT_OPTIONS: dict[str, tuple[str, ...]] = {"release-leaks": ("--workers", "thread")}


def broken_host(fault: str) -> DaemonFactory:
    """The pagefs target, with pagefs-host carrying one seeded bug."""
    if fault not in HOST_FAULTS:
        raise ValueError(f"unknown host fault {fault!r}; known: {', '.join(HOST_FAULTS)}")
    program = (sys.executable, "-m", "pagefs.conformance.host_faults", fault)

    # The bug is seeded in the Python reference (short-read, forget-ignored and
    # release-leaks are in requests the C fast path would otherwise answer itself).
    def serve(export: str, read_only: bool, stack: contextlib.ExitStack) -> Served:
        return serve_pagefs(export, read_only, stack, program, dispatch="python",
                            options=FAULT_OPTIONS.get(fault, ()))

    return DaemonFactory(f"pagefs+host:{fault}", pagefs_capabilities(), serve, {},
                         PAGEFS_WINDOW)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in HOST_FAULTS:
        print(f"usage: python -m pagefs.conformance.host_faults "
              f"{{{','.join(HOST_FAULTS)}}} <pagefs-host options>", file=sys.stderr)
        return 2
    _patch(argv[0])
    from pagefs.impl.host import daemon
    return daemon.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
