"""State, arguments and results of the pagefs specification.

Everything here is a plain immutable value (frozen dataclasses, tuples, bytes, ints and
`FrozenMap`), so states can be hashed, compared, kept in sets by a conformance harness,
and analysed symbolically by CrossHair. Nothing here does I/O.

Identifiers that an implementation chooses are chosen canonically by the spec: host
inode numbers (`ino`) are handed out in order and never reused, the export root is
inode 1; each guest numbers its nodeids and file handles from its own counters, nodeid
1 is the root, and a number is never handed out twice. A conformance harness keeps a
bijection between a target's identifiers and these.

Times are logical. An inode's `mtime` is an `Mtime`: a per-inode version that grows
with every change of its data, size or entries, and, when a guest set the time
explicitly, the nanosecond value it set. Real clocks are coarse (two writes in one clock
tick share an mtime) and unknown to the spec, so a harness compares an observed mtime
through `pagefs.spec.times.TimeMap`: one version always shows one real time, and a later
version never shows an earlier one. That is exactly what COH-META needs: a guest that
sees an older version than the host has is caught, without the spec knowing the clock.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import NewType, TypeVar

K = TypeVar("K")
V = TypeVar("V")

ROOT_INO = 1
"""The export root's inode number."""

ROOT_NODEID = 1
"""The root's nodeid in every guest (FUSE_ROOT_ID)."""

MiB = 1 << 20
OFF_MAX = (1 << 63) - 1
"""The largest file offset (loff_t): a mapping may not reach past it."""

# --- argument kinds: NewTypes, so the registry can tell what each parameter means ---

GuestId = NewType("GuestId", int)  # index of a guest in State.guests
NodeId = NewType("NodeId", int)  # a guest's nodeid
Fh = NewType("Fh", int)  # a guest's file or directory handle
Name = NewType("Name", bytes)  # one directory entry name, as the guest sent it
Path = NewType("Path", bytes)  # a host path relative to the export root, '/'-separated
Target = NewType("Target", bytes)  # a symlink's target text
Offset = NewType("Offset", int)  # a byte offset in a file
Length = NewType("Length", int)  # a byte count
Data = NewType("Data", bytes)  # bytes to write or store
Mode = NewType("Mode", int)  # permission bits (mode & 0o7777)
OpenFlags = NewType("OpenFlags", int)  # Linux open(2) flags: O_ACCMODE, O_TRUNC, O_EXCL
RenameFlags = NewType("RenameFlags", int)  # renameat2(2): RENAME_NOREPLACE, RENAME_EXCHANGE
WindowOffset = NewType("WindowOffset", int)  # a byte offset in a guest's DAX window
TimeNs = NewType("TimeNs", int)  # an explicit time in nanoseconds since the epoch
FileMode = NewType("FileMode", int)  # a file type and permission bits (S_IFIFO | 0o644)
XattrName = NewType("XattrName", bytes)  # an extended attribute's name ("user.x")
XattrFlags = NewType("XattrFlags", int)  # setxattr(2): XATTR_CREATE, XATTR_REPLACE
FallocMode = NewType("FallocMode", int)  # fallocate(2): KEEP_SIZE, PUNCH_HOLE, ZERO_RANGE

# Linux open(2) and renameat2(2) flag values, as they travel in FUSE requests.
O_RDONLY = 0
O_WRONLY = 1
O_RDWR = 2
O_ACCMODE = 3
O_CREAT = 0o100
O_EXCL = 0o200
O_TRUNC = 0o1000
RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
S_IFIFO, S_IFCHR, S_IFDIR, S_IFBLK, S_IFREG, S_IFLNK, S_IFSOCK = (
    0o010000, 0o020000, 0o040000, 0o060000, 0o100000, 0o120000, 0o140000)
XATTR_CREATE = 1
XATTR_REPLACE = 2
FALLOC_KEEP_SIZE = 0x01
FALLOC_PUNCH_HOLE = 0x02
FALLOC_ZERO_RANGE = 0x10


class Errno(enum.IntEnum):
    """The errnos the spec uses, with their Linux numbers (the FUSE wire carries -errno)."""

    EPERM = 1
    ENOENT = 2
    EIO = 5
    ENXIO = 6
    E2BIG = 7
    EBADF = 9
    EACCES = 13
    EFAULT = 14
    EBUSY = 16
    EEXIST = 17
    ENODEV = 19
    ENOTDIR = 20
    EISDIR = 21
    EINVAL = 22
    EFBIG = 27
    EROFS = 30
    EMLINK = 31
    ERANGE = 34
    ENAMETOOLONG = 36
    ENOTEMPTY = 39
    ELOOP = 40
    ENODATA = 61
    EPROTO = 71
    EOVERFLOW = 75
    EOPNOTSUPP = 95
    ESTALE = 116


class FileKind(enum.Enum):
    """What a host inode is. The spec's tree holds no device nodes (a guest cannot make
    one); FIFOs and sockets exist so that CONFINE can say the host never opens one."""

    REG = "reg"
    DIR = "dir"
    LNK = "lnk"
    FIFO = "fifo"
    SOCK = "sock"


class Access(enum.Enum):
    """A handle's access mode, from O_ACCMODE."""

    READ = "r"
    WRITE = "w"
    READ_WRITE = "rw"

    @property
    def can_read(self) -> bool:
        return self is not Access.WRITE

    @property
    def can_write(self) -> bool:
        return self is not Access.READ


class HandleKind(enum.Enum):
    """OPEN and CREATE make file handles; OPENDIR makes directory handles."""

    FILE = "file"
    DIR = "dir"


class FrozenMap(Mapping[K, V]):
    """An immutable, hashable dict; updates return a new map."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[K, V] | None = None) -> None:
        self._items: dict[K, V] = dict(items or {})

    def __getitem__(self, key: K) -> V:
        return self._items[key]

    def __iter__(self) -> Iterator[K]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(frozenset(self._items.items()))

    def __repr__(self) -> str:
        return f"FrozenMap({self._items!r})"

    def set(self, key: K, value: V) -> FrozenMap[K, V]:
        items = dict(self._items)
        items[key] = value
        return FrozenMap(items)

    def remove(self, key: K) -> FrozenMap[K, V]:
        items = dict(self._items)
        items.pop(key, None)
        return FrozenMap(items)


@dataclass(frozen=True)
class Caller:
    """Who a guest's requests act as: the uid and gid of its FUSE headers, and the umask
    its CREATE, MKDIR and MKNOD carry (OWNERSHIP). Root with no umask by default."""

    uid: int = 0
    gid: int = 0
    umask: int = 0


ROOT_CALLER = Caller()


@dataclass(frozen=True)
class Config:
    """The export and the geometry: fixed for a run, part of every state.

    Tests and CrossHair use small values (a 16-byte page, a 32-byte range); the defaults
    are the real ones: 4 KiB pages, 2 MiB ranges as in Linux's fs/fuse/dax.c. File data
    is held as plain bytes, so the spec refuses sizes past `max_size` with EFBIG (a real
    host allows more; harnesses keep offsets below it)."""

    page_size: int = 4096
    range_size: int = 2 * MiB
    window_ranges: int = 8  # ranges in each guest's DAX window
    guests: int = 2
    name_max: int = 255
    read_only: bool = False
    max_size: int = 64 * MiB  # files are plain bytes here: larger sizes are EFBIG
    callers: tuple[Caller, ...] = ()  # guest g's requests act as callers[g]; root if none

    def caller(self, guest: int) -> Caller:
        """Who guest `guest`'s requests act as (OWNERSHIP)."""
        return self.callers[guest] if guest < len(self.callers) else ROOT_CALLER

    @property
    def window_size(self) -> int:
        return self.range_size * self.window_ranges

    @property
    def map_alignment(self) -> int:
        """log2 of the page size: the alignment INIT announces for file offsets."""
        return self.page_size.bit_length() - 1


@dataclass(frozen=True)
class Mtime:
    """A logical modification time: `version` grows with every change; `ns` is the exact
    time a guest set with SETATTR, or None when the real clock at the change decides."""

    version: int = 0
    ns: int | None = None


@dataclass(frozen=True)
class Inode:
    """A host inode. `data` is a regular file's bytes or a symlink's target; `entries`
    a directory's names. `nlink` counts the names that refer to it. `tail` holds what
    guests stored beyond end of file in its last page (never file data; b"" = zeros).
    `dirty` is true when data changed since it last reached stable storage. `xattrs` are
    its extended attributes in the namespace guests may use (`user.`)."""

    kind: FileKind
    mode: int
    nlink: int = 1
    data: bytes = b""
    entries: FrozenMap[bytes, int] = field(default_factory=FrozenMap)
    parent: int = ROOT_INO  # a directory's parent directory (itself for the root)
    mtime: Mtime = Mtime()
    generation: int = 0
    tail: bytes = b""
    dirty: bool = False
    xattrs: FrozenMap[bytes, bytes] = field(default_factory=FrozenMap)
    uid: int = 0  # owner and group (OWNERSHIP): the host's own files are root's
    gid: int = 0

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass(frozen=True)
class Node:
    """A nodeid a guest holds: the inode it names and how many lookups FORGET must undo."""

    ino: int
    nlookup: int


@dataclass(frozen=True)
class Handle:
    """An open handle: the inode it was opened on (not its name), its access mode, kind."""

    ino: int
    access: Access
    kind: HandleKind = HandleKind.FILE


@dataclass(frozen=True)
class MappedRange:
    """A mapped window range: `range_size` bytes of inode `ino` from file offset `foffset`."""

    ino: int
    foffset: int
    writable: bool


@dataclass(frozen=True)
class Guest:
    """One guest's session with the host: its nodeids, handles and DAX window."""

    connected: bool
    nodes: FrozenMap[int, Node]
    handles: FrozenMap[int, Handle]
    window: tuple[MappedRange | None, ...]
    next_nodeid: int = ROOT_NODEID + 1
    next_fh: int = 1


@dataclass(frozen=True)
class State:
    """The whole system: the configuration, the host's inodes and every guest."""

    config: Config
    inodes: FrozenMap[int, Inode]
    guests: tuple[Guest, ...]
    next_ino: int = ROOT_INO + 1


# --- results ---


@dataclass(frozen=True)
class Attr:
    """What GETATTR and friends report. None means the spec leaves the field open
    (a directory's size and link count differ between filesystems)."""

    ino: int
    kind: FileKind
    mode: int
    nlink: int | None
    size: int | None
    mtime: Mtime
    uid: int | None = None  # owner and group; None: left open
    gid: int | None = None


@dataclass(frozen=True)
class Entry:
    """A LOOKUP-style reply: the nodeid the guest now holds, and the inode's attributes."""

    nodeid: int
    generation: int
    attr: Attr


@dataclass(frozen=True)
class Created:
    """CREATE's reply: the new entry and the handle opened on it."""

    entry: Entry
    fh: int


@dataclass(frozen=True)
class DirEntry:
    """One READDIR entry ('.' and '..' are not listed)."""

    name: bytes
    ino: int
    kind: FileKind


@dataclass(frozen=True)
class StatFs:
    """The STATFS fields the spec fixes; block counts are the host's business."""

    namelen: int


@dataclass(frozen=True)
class InitInfo:
    """INIT's reply: the alignment (log2) SETUPMAPPING's file offsets must have."""

    map_alignment: int


Value = (None | int | bytes | Attr | Entry | Created | StatFs | InitInfo
         | tuple[DirEntry, ...] | tuple[bytes, ...])


@dataclass(frozen=True)
class Ok:
    """The operation succeeded with `value`."""

    value: Value = None


@dataclass(frozen=True)
class Err:
    """The operation failed with `errno` and changed nothing."""

    errno: Errno


@dataclass(frozen=True)
class Fault:
    """A guest memory access faulted (SIGBUS/EFAULT for that access only)."""


FAULT = Fault()

Result = Ok | Err | Fault


@dataclass(frozen=True)
class Outcome:
    """One allowed outcome of an operation: its result and the state after it."""

    result: Result
    state: State


def empty_guest(config: Config, connected: bool) -> Guest:
    """A guest holding nothing but the root nodeid (which it never forgets)."""
    return Guest(
        connected=connected,
        nodes=FrozenMap({ROOT_NODEID: Node(ROOT_INO, 1)}),
        handles=FrozenMap(),
        window=(None,) * config.window_ranges,
    )


def initial_state(config: Config | None = None, *, connected: bool = True) -> State:
    """An export holding only its empty root directory, and `config.guests` guests,
    already past INIT when `connected` (the usual start for tests and exploration)."""
    config = config or Config()
    root = Inode(kind=FileKind.DIR, mode=0o755, nlink=1, parent=ROOT_INO)
    return State(
        config=config,
        inodes=FrozenMap({ROOT_INO: root}),
        guests=tuple(empty_guest(config, connected) for _ in range(config.guests)),
    )
