"""The filesystem seam: the interface the host's dispatcher calls, and the value types a
filesystem answers with, whoever asks.

`Filesystem` (one per export) and `FilesystemSession` (one per connected guest) are what
the dispatcher needs of a filesystem; the passthrough filesystem is checked against them
by mypy where the daemon hands its session to the dispatcher. The conformance Target API
(`conformance/target.py`) speaks the same value types, so a third-party target and the
host daemon agree without either importing the other. No I/O here.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Entry:
    """A LOOKUP-like reply: the guest now holds one more lookup of `nodeid`."""

    nodeid: int
    generation: int
    attr: os.stat_result


@dataclass(frozen=True)
class DirEntry:
    """One READDIR entry; `offset` is the cookie that resumes the listing after it."""

    ino: int
    offset: int
    type: int  # DT_*: stat.S_IFMT(mode) >> 12
    name: bytes


@dataclass(frozen=True)
class MapGrant:
    """A file range the caller may donate to the guest's window; the caller closes `fd`."""

    fd: int
    fd_offset: int
    length: int
    writable: bool
    # (moffset, length) of each earlier mapping the new one covers whole: the caller takes
    # them out of the front-end's window first, since a front-end may refuse a mapping
    # over a live one (QEMU 11.1 does: "VIRTIO Shared Memory mapping overlap")
    replaces: tuple[tuple[int, int], ...] = ()


class MappedRange(Protocol):
    """A range of the guest's window the session has on its books."""

    @property
    def moffset(self) -> int: ...

    @property
    def length(self) -> int: ...


class FilesystemSession(Protocol):
    """One guest's view of an export. Every request raises OSError(errno) on failure;
    names are bytes; nodeids and handles are this guest's own."""

    name: str

    def lookup(self, parent: int, name: bytes) -> Entry: ...
    def forget(self, nodeid: int, nlookup: int) -> None: ...
    def getattr(self, nodeid: int, fh: int | None = None) -> os.stat_result: ...
    def setattr(self, nodeid: int, fh: int | None, *, size: int | None = None,
                mode: int | None = None, atime_ns: int | None = None,
                mtime_ns: int | None = None) -> os.stat_result: ...
    def readlink(self, nodeid: int) -> bytes: ...
    def symlink(self, parent: int, name: bytes, target: bytes) -> Entry: ...
    def mkdir(self, parent: int, name: bytes, mode: int) -> Entry: ...
    def unlink(self, parent: int, name: bytes) -> None: ...
    def rmdir(self, parent: int, name: bytes) -> None: ...
    def rename(self, parent: int, name: bytes, newparent: int, newname: bytes,
               flags: int = 0) -> None: ...
    def open(self, nodeid: int, flags: int) -> int: ...
    def create(self, parent: int, name: bytes, flags: int, mode: int) -> tuple[Entry, int]: ...
    def read(self, fh: int, offset: int, size: int) -> bytes: ...
    def write(self, fh: int, offset: int, data: bytes) -> int: ...
    def flush(self, fh: int) -> None: ...
    def fsync(self, fh: int, datasync: bool) -> None: ...
    def release(self, fh: int) -> None: ...
    def opendir(self, nodeid: int) -> int: ...
    def readdir(self, fh: int, offset: int) -> list[DirEntry]: ...
    def releasedir(self, fh: int) -> None: ...
    def statfs(self, nodeid: int) -> os.statvfs_result: ...
    def setupmapping(self, fh: int, foffset: int, length: int, writable: bool,
                     moffset: int) -> MapGrant:
        """Checks the request and records the range; the caller donates grant.fd."""
        ...
    def setupmapping_by_node(self, nodeid: int, foffset: int, length: int, writable: bool,
                             moffset: int) -> MapGrant:
        """As setupmapping, through a handle opened for it (a Linux guest sends no fh)."""
        ...
    def cancel_mapping(self, moffset: int) -> None:
        """Takes back a range just granted that the front-end did not map."""
        ...
    def removemapping(self, moffset: int, length: int) -> None: ...
    def window_locked(self) -> AbstractContextManager[None]:
        """Held across a mapping request: the record and the front-end's window change
        together, one request at a time."""
        ...
    def link(self, nodeid: int, parent: int, name: bytes) -> Entry: ...
    def mknod(self, parent: int, name: bytes, mode: int, rdev: int) -> Entry: ...
    def setxattr(self, nodeid: int, name: bytes, value: bytes, flags: int) -> None: ...
    def getxattr(self, nodeid: int, name: bytes, size: int) -> bytes | int:
        """The value, or its length when `size` is 0."""
        ...
    def listxattr(self, nodeid: int, size: int) -> bytes | int: ...
    def removexattr(self, nodeid: int, name: bytes) -> None: ...
    def fallocate(self, fh: int, offset: int, length: int, mode: int) -> None: ...
    def syncfs(self, nodeid: int) -> None: ...

    @property
    def mappings(self) -> Sequence[MappedRange]:
        """The window ranges on the books, in window order."""
        ...

    def reset(self) -> dict[str, int]:
        """A new FUSE session on the same connection: release all, count what was held."""
        ...

    def close(self) -> None:
        """RECLAIM: release all this guest held."""
        ...


class Filesystem(Protocol):
    """One export, shared by every guest connected to it."""

    def session(self) -> FilesystemSession: ...
