"""The Target interface: what an implementation provides to be judged by the suite.

A target is one export of a host directory seen by one or more guests. It offers
three things, and nothing else is assumed:

* **host operations** (`Host`): what the host's own processes do to the exported
  directory at any time -- write, truncate, create, unlink, rename, mkdir, rmdir,
  chmod -- and a host-side read so the suite can see what a guest store did;
* **guest requests** (`Guest`): the FUSE requests, with FUSE meaning, on integer
  nodeids (root is 1) and handles the target chooses;
* **guest memory** (`Guest.setupmapping`, `load`, `store`): a DAX window the guest
  maps file ranges into, and plain loads and stores on it.

Every failure is an `OSError` carrying the errno the target answered; a load or
store that faults is `OSError(EFAULT)` for that access only. Properties a target
cannot exercise are declared by leaving capabilities out: the suite then reports
them "n/a", never "pass".

A third party implements `Guest` (about twenty short methods: usually a thin layer
over its own client library), reuses `HostDir` for the host side, and registers a
factory with `pagefs.conformance.targets.register`. See docs/ARCHITECTURE.md.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable

from pagefs.impl.filesystem import DirEntry, Entry
from pagefs.impl.protocol.constants import FUSE_ROOT_ID

# Capabilities: what the suite may ask of a target.
MAPPINGS = "mappings"  # SETUPMAPPING/REMOVEMAPPING, LOAD/STORE through a DAX window
PEERS = "peers"  # two guests at once on the same export
READ_ONLY = "read-only"  # can be started as a read-only export
OWN_HANDLES = "own-handles"  # handles and nodeids are the target's own, not the harness's
RAW_NAMES = "raw-names"  # names reach the target as sent (a syscall view cannot send '/')
CONFINED = "confined"  # host and guest resolve names in separate worlds (CONFINE applies)
SPECIAL = "special"  # LINK, MKNOD, the xattr requests, FALLOCATE, SYNCFS (Guest's optional part)
RESET = "reset"  # INIT again on a live connection: a guest kernel reset without unmount
CREDENTIALS = "credentials"  # requests as a chosen uid/gid with a umask (Guest.act_as)
RACES = "races"  # the host truncates a file while a guest's read copies it (read_across_truncate)

ALL_CAPABILITIES = frozenset({MAPPINGS, PEERS, READ_ONLY, OWN_HANDLES, RAW_NAMES, CONFINED,
                              SPECIAL, RESET, CREDENTIALS, RACES})

ROOT_NODEID = FUSE_ROOT_ID  # the export root's nodeid, as FUSE numbers it


# The request layer's reply shapes are the seam types of docs/ARCHITECTURE.md, shared
# with the host's filesystem layer: a LOOKUP-like reply and one READDIR entry.
__all__ = ["Entry", "DirEntry", "Host", "Guest", "Target", "TargetFactory"]


class Host(ABC):
    """The host's own processes acting on the export directory; paths are relative
    bytes, never followed through a symlink. `HostDir` implements this for a real
    directory; a target normally just uses it."""

    @abstractmethod
    def write(self, path: bytes, offset: int, data: bytes) -> int: ...
    @abstractmethod
    def read(self, path: bytes, offset: int, size: int) -> bytes: ...
    @abstractmethod
    def truncate(self, path: bytes, size: int) -> None: ...
    @abstractmethod
    def create(self, path: bytes, mode: int = 0o644) -> None: ...
    @abstractmethod
    def unlink(self, path: bytes) -> None: ...
    @abstractmethod
    def rename(self, old: bytes, new: bytes) -> None: ...
    @abstractmethod
    def mkdir(self, path: bytes, mode: int = 0o755) -> None: ...
    @abstractmethod
    def rmdir(self, path: bytes) -> None: ...
    @abstractmethod
    def chmod(self, path: bytes, mode: int) -> None: ...
    @abstractmethod
    def symlink(self, target: bytes, path: bytes) -> None: ...
    @abstractmethod
    def mkfifo(self, path: bytes, mode: int = 0o644) -> None: ...
    @abstractmethod
    def stat(self, path: bytes) -> os.stat_result: ...


class Guest(ABC):
    """One connected guest: FUSE requests and its DAX window. Errors are OSError(errno)."""

    @abstractmethod
    def lookup(self, parent: int, name: bytes) -> Entry: ...
    @abstractmethod
    def forget(self, nodeid: int, nlookup: int) -> None: ...
    @abstractmethod
    def getattr(self, nodeid: int, fh: int | None = None) -> os.stat_result: ...
    @abstractmethod
    def setattr(self, nodeid: int, fh: int | None = None, *, size: int | None = None,
                mode: int | None = None, mtime_ns: int | None = None) -> os.stat_result: ...
    @abstractmethod
    def readlink(self, nodeid: int) -> bytes: ...
    @abstractmethod
    def symlink(self, parent: int, name: bytes, target: bytes) -> Entry: ...
    @abstractmethod
    def mkdir(self, parent: int, name: bytes, mode: int) -> Entry: ...
    @abstractmethod
    def unlink(self, parent: int, name: bytes) -> None: ...
    @abstractmethod
    def rmdir(self, parent: int, name: bytes) -> None: ...
    @abstractmethod
    def rename(self, parent: int, name: bytes, newparent: int, newname: bytes,
               flags: int = 0) -> None: ...
    @abstractmethod
    def open(self, nodeid: int, flags: int) -> int: ...
    @abstractmethod
    def create(self, parent: int, name: bytes, flags: int, mode: int) -> tuple[Entry, int]: ...
    @abstractmethod
    def read(self, fh: int, offset: int, size: int) -> bytes: ...
    @abstractmethod
    def write(self, fh: int, offset: int, data: bytes) -> int: ...
    @abstractmethod
    def flush(self, fh: int) -> None: ...
    @abstractmethod
    def fsync(self, fh: int, datasync: bool = False) -> None: ...
    @abstractmethod
    def release(self, fh: int) -> None: ...
    @abstractmethod
    def opendir(self, nodeid: int) -> int: ...
    @abstractmethod
    def readdir(self, fh: int) -> list[DirEntry]: ...
    @abstractmethod
    def releasedir(self, fh: int) -> None: ...
    @abstractmethod
    def statfs(self, nodeid: int) -> os.statvfs_result: ...

    # Guest memory (capability MAPPINGS).
    @abstractmethod
    def setupmapping(self, fh: int, foffset: int, length: int, writable: bool,
                     moffset: int) -> None: ...
    @abstractmethod
    def removemapping(self, moffset: int, length: int) -> None: ...
    @abstractmethod
    def load(self, moffset: int, size: int) -> bytes: ...
    @abstractmethod
    def store(self, moffset: int, data: bytes) -> None: ...

    @abstractmethod
    def close(self) -> None:
        """Disconnect: every handle, nodeid and mapping this guest held is released."""

    # Links, special files, extended attributes, space (capability SPECIAL): a target
    # that declares SPECIAL overrides all of these; the suite asks no other target.
    def link(self, nodeid: int, newparent: int, newname: bytes) -> Entry:
        raise self._not_special()

    def mknod(self, parent: int, name: bytes, mode: int) -> Entry:
        raise self._not_special()

    def setxattr(self, nodeid: int, name: bytes, value: bytes, flags: int) -> None:
        raise self._not_special()

    def getxattr(self, nodeid: int, name: bytes, size: int) -> bytes | int:
        """The value, or its length when `size` is 0."""
        raise self._not_special()

    def listxattr(self, nodeid: int, size: int) -> tuple[bytes, ...] | int:
        """The attribute names, sorted, or the length of their NUL-terminated list."""
        raise self._not_special()

    def removexattr(self, nodeid: int, name: bytes) -> None:
        raise self._not_special()

    def fallocate(self, fh: int, offset: int, length: int, mode: int) -> None:
        raise self._not_special()

    def syncfs(self, nodeid: int) -> None:
        raise self._not_special()

    def act_as(self, uid: int, gid: int, umask: int) -> None:
        """From now on this guest's requests act as (uid, gid) with `umask`, as a guest
        kernel's do for one of its users (capability CREDENTIALS)."""
        raise NotImplementedError(f"{type(self).__name__} does not offer {CREDENTIALS}")

    def reinit(self) -> None:
        """INIT on this guest's live connection, as a guest kernel that was reset without
        unmounting sends it (capability RESET): a new session on the same connection."""
        raise NotImplementedError(f"{type(self).__name__} does not offer {RESET}")

    def read_across_truncate(self, fh: int, offset: int, size: int,
                             truncate: Callable[[], None]) -> bytes:
        """READ, with `truncate` (a real truncate by the host) called exactly once: while
        the read's copy is under way where the target can time it (capability RACES), so
        that the copy meets the new end of file mid-way; otherwise after the read."""
        raise NotImplementedError(f"{type(self).__name__} does not offer {RACES}")

    def _not_special(self) -> NotImplementedError:
        return NotImplementedError(f"{type(self).__name__} does not offer {SPECIAL}")


class Target(ABC):
    """One running export: its host side, its guests, and what it can be asked."""

    name: str
    capabilities: frozenset[str]
    read_only: bool
    window_size: int  # bytes of DAX window per guest (0 without MAPPINGS)
    host: Host

    @abstractmethod
    def connect(self) -> Guest:
        """Connect a new guest to the export (a second call needs capability PEERS)."""

    @abstractmethod
    def close(self) -> None:
        """Disconnect every guest and stop whatever the target started."""

    def leftovers(self) -> str | None:
        """Once every guest has disconnected: what the host still holds for them (one
        line), or None when it holds nothing more than before any guest came, or when
        the target cannot tell. RECLAIM's host side; optional."""
        return None

    def diagnostics(self) -> str | None:
        """One line on why the guest lost its connection, for the step where it did:
        "back-end died (exit status -6): <its last log lines>", or None when the target
        has nothing to add. Optional."""
        return None

    def __enter__(self) -> Target:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class TargetFactory(ABC):
    """Starts fresh instances of one kind of target, each over a new empty export.

    The suite starts one instance per test case, so a case never sees another's
    names or caches; whatever is expensive to set up (a daemon, a mount) may live in
    the factory and be shared, as long as each instance's export starts empty.
    """

    name: str
    capabilities: frozenset[str]

    @abstractmethod
    def start(self, *, read_only: bool = False) -> Target:
        """A new target exporting a new, empty directory (read-only if asked)."""

    def why_not(self, capability: str) -> str:
        """One line: why this kind of target lacks `capability` (for n/a rows)."""
        return f"{self.name} does not offer {capability}"

    def close(self) -> None:
        """Undo what the factory set up (mounts, daemons, directories)."""
        return None  # nothing to undo unless a factory sets something up

    def __enter__(self) -> TargetFactory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
