"""CREDENTIALS: each request acts on the host as the guest user its header names.

virtiofsd's model: the daemon runs as root, and for each request the serving thread
takes the header's uid and gid as its file-system uid and gid (setfsuid/setfsgid act on
the calling thread alone), so the host kernel itself checks permissions, owns new files
by that user, and clears set-uid/set-gid where it would for that user (an unprivileged
fsuid has no CAP_FSETID). The daemon holds no supplementary groups (dropped at start,
as virtiofsd does), so a request has exactly its header's uid and gid: a permission a
guest user has only through a supplementary group is not granted on the host.

Where the guest negotiated FUSE_HANDLE_KILLPRIV_V2 and flags a request as one that
must kill set-uid/set-gid (WRITE_KILL_SUIDGID, FATTR_KILL_SUIDGID, OPEN_KILL_SUIDGID),
the thread also drops CAP_FSETID for it, so even a request from guest root clears them
as the kernel would for a write by anyone.

`--squash-uid`/`--squash-gid` make a single-user export: every request acts as that
host user whatever its header says (virtiofsd's --translate-uid/gid squash). A daemon
not started as root cannot switch: every request acts as the daemon's own user.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from pagefs.impl.host._credentials import lib

_NO_ID = 0xFFFF_FFFF  # (uid_t)-1: "leave unchanged" to setfsuid, never a guest user


class Credentials:
    """How the daemon's threads take on a request's user."""

    def __init__(self, *, squash_uid: int | None = None, squash_gid: int | None = None
                 ) -> None:
        self.switching = os.geteuid() == 0
        self.squash_uid = squash_uid
        self.squash_gid = squash_gid

    def describe(self) -> str:
        if not self.switching:
            return f"not root: every request acts as uid {os.geteuid()}"
        if self.squash_uid is not None or self.squash_gid is not None:
            return (f"requests act as uid {self._uid(0)} gid {self._gid(0)} "
                    "(single-user export)")
        return "requests act as their guest user (fsuid/fsgid per request)"

    def _uid(self, uid: int) -> int:
        return uid if self.squash_uid is None else self.squash_uid

    def _gid(self, gid: int) -> int:
        return gid if self.squash_gid is None else self.squash_gid

    @contextmanager
    def acting_as(self, uid: int, gid: int, *, kill_suidgid: bool = False) -> Iterator[None]:
        """Run the block as (uid, gid) on this thread; afterwards the daemon's own again."""
        if not self.switching:
            yield
            return
        uid, gid = self._uid(uid), self._gid(gid)
        if uid == _NO_ID or gid == _NO_ID:
            raise OSError(errno.EINVAL, "uid or gid -1 names no user")
        _set(lib.setfsgid, gid)
        try:
            _set(lib.setfsuid, uid)
            try:
                if kill_suidgid and lib.pagefs_set_fsetid(0) != 0:
                    raise OSError(errno.EPERM, "cannot drop CAP_FSETID")
                try:
                    yield
                finally:
                    if kill_suidgid:
                        lib.pagefs_set_fsetid(1)
            finally:
                _set(lib.setfsuid, 0)
        finally:
            _set(lib.setfsgid, 0)


def drop_supplementary_groups() -> None:
    """A request must carry its header's gid alone: none of the daemon's own groups."""
    if os.geteuid() == 0:
        os.setgroups([])


def _set(call: Callable[[int], int], value: int) -> None:
    """setfsuid/setfsgid report nothing but the previous id: call twice to know."""
    call(value)
    if call(value) != value:
        raise OSError(errno.EPERM, f"cannot act as id {value}")
