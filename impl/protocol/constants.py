"""FUSE protocol numbers, as Linux include/uapi/linux/fuse.h defines them."""

from __future__ import annotations

from enum import IntEnum, IntFlag

from pagefs.impl.machine import PAGE_SIZE

FUSE_KERNEL_VERSION = 7
# The layouts this codec follows are those of 7.36 (flags2 in INIT); every struct it uses
# has kept its size since.
FUSE_KERNEL_MINOR_VERSION = 36
# SETUPMAPPING, REMOVEMAPPING and map_alignment appeared in 7.31: the oldest minor we serve.
FUSE_MIN_MINOR_VERSION = 31

FUSE_ROOT_ID = 1
# pagefs's transfer limit, both ways: the max_write and max_pages INIT agrees, the
# largest READ, WRITE or READDIR buffer either side sends or accepts.
MAX_TRANSFER = 1 << 20
# The guest kernel's limit on a directory entry name (fs/fuse/fuse_i.h FUSE_NAME_MAX).
FUSE_NAME_MAX = 1024
# The top bit of `unique` marks a resent request (7.40).
FUSE_UNIQUE_RESEND = 1 << 63
# The Linux guest maps the DAX window in 2 MiB ranges (fs/fuse/dax.c FUSE_DAX_SHIFT).
FUSE_DAX_SHIFT = 21
# Shorter layouts of protocols before 7.9 (entry, attr), 7.4 (statfs), 7.9 (write_in) and
# 7.12 (mknod_in): all older than FUSE_MIN_MINOR_VERSION, so never accepted here; the INIT
# reply's own compat sizes (8 before 7.5, 24 before 7.23) are, to learn a server's version.
FUSE_COMPAT_ENTRY_OUT_SIZE = 120
FUSE_COMPAT_ATTR_OUT_SIZE = 96
FUSE_COMPAT_STATFS_SIZE = 48
FUSE_COMPAT_WRITE_IN_SIZE = 24
FUSE_COMPAT_MKNOD_IN_SIZE = 8
FUSE_COMPAT_INIT_OUT_SIZE = 8
FUSE_COMPAT_22_INIT_OUT_SIZE = 24
# PAGE_SIZE / sizeof(struct fuse_removemapping_one): the most entries one REMOVEMAPPING holds.
FUSE_REMOVEMAPPING_MAX_ENTRY = PAGE_SIZE // 16


class Opcode(IntEnum):
    LOOKUP = 1
    FORGET = 2
    GETATTR = 3
    SETATTR = 4
    READLINK = 5
    SYMLINK = 6
    MKNOD = 8
    MKDIR = 9
    UNLINK = 10
    RMDIR = 11
    RENAME = 12
    LINK = 13
    OPEN = 14
    READ = 15
    WRITE = 16
    STATFS = 17
    RELEASE = 18
    FSYNC = 20
    SETXATTR = 21
    GETXATTR = 22
    LISTXATTR = 23
    REMOVEXATTR = 24
    FLUSH = 25
    INIT = 26
    OPENDIR = 27
    READDIR = 28
    RELEASEDIR = 29
    FSYNCDIR = 30
    GETLK = 31
    SETLK = 32
    SETLKW = 33
    ACCESS = 34
    CREATE = 35
    INTERRUPT = 36
    BMAP = 37
    DESTROY = 38
    IOCTL = 39
    POLL = 40
    NOTIFY_REPLY = 41
    BATCH_FORGET = 42
    FALLOCATE = 43
    READDIRPLUS = 44
    RENAME2 = 45
    LSEEK = 46
    COPY_FILE_RANGE = 47
    SETUPMAPPING = 48
    REMOVEMAPPING = 49
    SYNCFS = 50
    TMPFILE = 51
    STATX = 52


class InitFlag(IntFlag):
    """INIT capability bits; bits 32..63 travel in `flags2` (only when INIT_EXT is set)."""

    ASYNC_READ = 1 << 0
    POSIX_LOCKS = 1 << 1
    FILE_OPS = 1 << 2
    ATOMIC_O_TRUNC = 1 << 3
    EXPORT_SUPPORT = 1 << 4
    BIG_WRITES = 1 << 5
    DONT_MASK = 1 << 6
    SPLICE_WRITE = 1 << 7
    SPLICE_MOVE = 1 << 8
    SPLICE_READ = 1 << 9
    FLOCK_LOCKS = 1 << 10
    HAS_IOCTL_DIR = 1 << 11
    AUTO_INVAL_DATA = 1 << 12
    DO_READDIRPLUS = 1 << 13
    READDIRPLUS_AUTO = 1 << 14
    ASYNC_DIO = 1 << 15
    WRITEBACK_CACHE = 1 << 16
    NO_OPEN_SUPPORT = 1 << 17
    PARALLEL_DIROPS = 1 << 18
    HANDLE_KILLPRIV = 1 << 19
    POSIX_ACL = 1 << 20
    ABORT_ERROR = 1 << 21
    MAX_PAGES = 1 << 22
    CACHE_SYMLINKS = 1 << 23
    NO_OPENDIR_SUPPORT = 1 << 24
    EXPLICIT_INVAL_DATA = 1 << 25
    MAP_ALIGNMENT = 1 << 26
    SUBMOUNTS = 1 << 27
    HANDLE_KILLPRIV_V2 = 1 << 28
    SETXATTR_EXT = 1 << 29
    INIT_EXT = 1 << 30
    INIT_RESERVED = 1 << 31
    SECURITY_CTX = 1 << 32
    HAS_INODE_DAX = 1 << 33
    CREATE_SUPP_GROUP = 1 << 34
    HAS_EXPIRE_ONLY = 1 << 35
    DIRECT_IO_ALLOW_MMAP = 1 << 36
    PASSTHROUGH = 1 << 37
    NO_EXPORT_SUPPORT = 1 << 38
    HAS_RESEND = 1 << 39
    ALLOW_IDMAP = 1 << 40
    OVER_IO_URING = 1 << 41
    REQUEST_TIMEOUT = 1 << 42


class SetattrValid(IntFlag):
    """fuse_setattr_in.valid: which fields of the request are meaningful."""

    MODE = 1 << 0
    UID = 1 << 1
    GID = 1 << 2
    SIZE = 1 << 3
    ATIME = 1 << 4
    MTIME = 1 << 5
    FH = 1 << 6
    ATIME_NOW = 1 << 7
    MTIME_NOW = 1 << 8
    LOCKOWNER = 1 << 9
    CTIME = 1 << 10
    KILL_SUIDGID = 1 << 11


class OpenReplyFlag(IntFlag):
    """fuse_open_out.open_flags (FOPEN_*)."""

    DIRECT_IO = 1 << 0
    KEEP_CACHE = 1 << 1
    NONSEEKABLE = 1 << 2
    CACHE_DIR = 1 << 3
    STREAM = 1 << 4
    NOFLUSH = 1 << 5
    PARALLEL_DIRECT_WRITES = 1 << 6
    PASSTHROUGH = 1 << 7


# fuse_open_in.open_flags / fuse_create_in.open_flags
FUSE_OPEN_KILL_SUIDGID = 1 << 0
# fuse_getattr_in.getattr_flags
FUSE_GETATTR_FH = 1 << 0
# fuse_fsync_in.fsync_flags
FUSE_FSYNC_FDATASYNC = 1 << 0
# fuse_release_in.release_flags
FUSE_RELEASE_FLUSH = 1 << 0
FUSE_RELEASE_FLOCK_UNLOCK = 1 << 1
# fuse_write_in.write_flags
FUSE_WRITE_CACHE = 1 << 0
FUSE_WRITE_LOCKOWNER = 1 << 1
FUSE_WRITE_KILL_SUIDGID = 1 << 2
# fuse_read_in.read_flags
FUSE_READ_LOCKOWNER = 1 << 1
# fuse_setupmapping_in.flags
FUSE_SETUPMAPPING_FLAG_WRITE = 1 << 0
FUSE_SETUPMAPPING_FLAG_READ = 1 << 1
# The Linux guest (fs/fuse/dax.c) sends fh = -1: it maps by the header's nodeid, no handle.
FUSE_SETUPMAPPING_NO_FH = (1 << 64) - 1
# fuse_rename2_in.flags: the renameat2(2) flags
RENAME_NOREPLACE = 1 << 0
RENAME_EXCHANGE = 1 << 1
RENAME_WHITEOUT = 1 << 2
