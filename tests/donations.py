"""Every descriptor a back-end donates to this process's front-ends, as a hostile VMM
sees it: each front-end connected while `observing` is active gets an `on_shmem_map`
observer, which the front-end calls with each SHMEM_MAP's fd on arrival, before it maps
it (and closes it after: an observer that keeps one dups it)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from pagefs.impl.transport.frontend import VhostUserFrontend

# (fd, fd_offset, shm_offset, length, writable)
Observer = Callable[[int, int, int, int, bool], None]


@contextmanager
def observing(observer: Observer) -> Iterator[None]:
    real = VhostUserFrontend.__dict__["connect"]

    def connect(cls: type[VhostUserFrontend], *args: Any, **kwargs: Any) -> VhostUserFrontend:
        frontend = real.__func__(cls, *args, **kwargs)
        frontend.on_shmem_map = observer
        return frontend

    VhostUserFrontend.connect = classmethod(connect)  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        VhostUserFrontend.connect = real  # type: ignore[method-assign]
