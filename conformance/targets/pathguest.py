"""A guest that is a directory seen through the kernel: FUSE requests as syscalls.

Used by the `local` target (the guest looks at the host directory itself) and by
`mount:HOSTDIR:GUESTDIR` (the guest looks at a mounted view: bindfs, 9p, virtiofs in
a VM). The harness only translates: a nodeid is an O_PATH descriptor (so it pins the
inode as a FUSE lookup count does), a handle is an open descriptor, a mapping is a
MAP_SHARED mapping in a `Window`. Every answer -- bytes, attributes, errno, fault --
comes from the kernel and the filesystem below it.

Identifiers are handed out from counters, never reused, because descriptor numbers
are: handle and nodeid hygiene (HANDLE, NODEID) is therefore the harness's own here,
which is why these targets do not claim OWN_HANDLES.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat

from pagefs.conformance.target import ROOT_NODEID, DirEntry, Entry, Guest
from pagefs.conformance.targets.system import LOCAL, GuestMemory, System

_ACCESS = os.O_RDONLY | os.O_WRONLY | os.O_RDWR
_libc = ctypes.CDLL(None, use_errno=True)  # fallocate, syncfs: os has neither


class PathGuest(Guest):
    def __init__(self, root: str, window_size: int, system: System = LOCAL) -> None:
        # The core requests go through `system` (this kernel, or a VM's through its
        # agent); the SPECIAL ones below are this kernel's only.
        self._os = system
        self._nodes: dict[int, tuple[int, int]] = {}  # nodeid -> (O_PATH fd, lookup count)
        self._by_inode: dict[tuple[int, int], int] = {}
        self._files: dict[int, int] = {}  # fh -> fd
        self._dirs: dict[int, int] = {}  # fh -> directory fd
        self._next_nodeid = ROOT_NODEID + 1
        self._next_fh = 1
        root_fd = system.open(root, os.O_PATH | os.O_DIRECTORY)
        self._nodes[ROOT_NODEID] = (root_fd, 1)
        self._by_inode[self._key(root_fd)] = ROOT_NODEID
        self.window: GuestMemory | None = system.window(window_size) if window_size else None

    def _key(self, fd: int) -> tuple[int, int]:
        st = self._os.stat(fd)
        return (st.st_dev, st.st_ino)

    def _node(self, nodeid: int) -> int:
        try:
            return self._nodes[nodeid][0]
        except KeyError:
            raise OSError(errno.ENOENT, f"unknown nodeid {nodeid}") from None

    def _fd(self, fh: int, table: dict[int, int] | None = None) -> int:
        try:
            return (self._files if table is None else table)[fh]
        except KeyError:
            raise OSError(errno.EBADF, f"unknown handle {fh}") from None

    @staticmethod
    def _proc(fd: int) -> str:
        return f"/proc/self/fd/{fd}"

    @staticmethod
    def _name(name: bytes) -> bytes:
        # A path walk cannot carry these; FUSE's kernel side never sends them either.
        if b"/" in name or b"\0" in name or name in (b"", b".", b".."):
            raise OSError(errno.EINVAL, f"name not expressible as a path component: {name!r}")
        return name

    def _enter(self, fd: int) -> Entry:
        """Count a lookup of the inode behind `fd` (which this call owns)."""
        key = self._key(fd)
        nodeid = self._by_inode.get(key)
        if nodeid is None:
            nodeid, self._next_nodeid = self._next_nodeid, self._next_nodeid + 1
            self._nodes[nodeid] = (fd, 1)
            self._by_inode[key] = nodeid
        else:
            held, count = self._nodes[nodeid]
            self._nodes[nodeid] = (held, count + 1)
            self._os.close(fd)
            fd = held
        return Entry(nodeid, 0, self._os.stat(fd))

    def _lookup_fd(self, parent: int, name: bytes) -> int:
        directory = self._node(parent)  # a stale nodeid is refused before a bad name
        return self._os.open(self._name(name), os.O_PATH | os.O_NOFOLLOW, dir_fd=directory)

    # Namespace
    def lookup(self, parent: int, name: bytes) -> Entry:
        return self._enter(self._lookup_fd(parent, name))

    def forget(self, nodeid: int, nlookup: int) -> None:
        if nodeid == ROOT_NODEID or nodeid not in self._nodes:
            return
        fd, count = self._nodes[nodeid]
        if count > nlookup:
            self._nodes[nodeid] = (fd, count - nlookup)
            return
        del self._by_inode[self._key(fd)]
        del self._nodes[nodeid]
        self._os.close(fd)

    def getattr(self, nodeid: int, fh: int | None = None) -> os.stat_result:
        return self._os.stat(self._fd(fh) if fh is not None else self._node(nodeid))

    def setattr(self, nodeid: int, fh: int | None = None, *, size: int | None = None,
                mode: int | None = None, mtime_ns: int | None = None) -> os.stat_result:
        path = self._proc(self._fd(fh) if fh is not None else self._node(nodeid))
        if size is not None:
            if fh is not None:
                self._os.ftruncate(self._fd(fh), size)
            else:
                self._os.truncate(path, size)
        if mode is not None:
            self._os.chmod(path, mode)
        if mtime_ns is not None:
            st = self._os.stat(path)
            self._os.utime_ns(path, st.st_atime_ns, mtime_ns)
        return self._os.stat(path)

    def readlink(self, nodeid: int) -> bytes:
        fd = self._node(nodeid)
        if not stat.S_ISLNK(self._os.stat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a symlink")
        return self._os.readlink_fd(fd)

    def symlink(self, parent: int, name: bytes, target: bytes) -> Entry:
        directory = self._node(parent)
        self._os.symlink(target, self._name(name), directory)
        return self.lookup(parent, name)

    def mkdir(self, parent: int, name: bytes, mode: int) -> Entry:
        directory = self._node(parent)
        self._os.mkdir(self._name(name), mode, directory)
        return self.lookup(parent, name)

    def unlink(self, parent: int, name: bytes) -> None:
        directory = self._node(parent)
        self._os.unlink(self._name(name), directory)

    def rmdir(self, parent: int, name: bytes) -> None:
        directory = self._node(parent)
        self._os.rmdir(self._name(name), directory)

    def rename(self, parent: int, name: bytes, newparent: int, newname: bytes,
               flags: int = 0) -> None:
        src, dst = self._node(parent), self._node(newparent)
        self._os.renameat2(src, self._name(name), dst, self._name(newname), flags)

    # Files
    def _new_fh(self, table: dict[int, int], fd: int) -> int:
        fh, self._next_fh = self._next_fh, self._next_fh + 1
        table[fh] = fd
        return fh

    def open(self, nodeid: int, flags: int) -> int:
        fd = self._node(nodeid)
        mode = self._os.stat(fd).st_mode
        # The kernel sends OPENDIR for directories and never OPEN; a FUSE server sees
        # OPEN only for what the guest could open as a file.
        if stat.S_ISDIR(mode):
            raise OSError(errno.EISDIR, "is a directory")
        if not stat.S_ISREG(mode):
            raise OSError(errno.EACCES if stat.S_ISLNK(mode) else errno.ENXIO,
                          "not a regular file")
        return self._new_fh(self._files,
                            self._os.open(self._proc(fd), flags & (_ACCESS | os.O_TRUNC)))

    def create(self, parent: int, name: bytes, flags: int, mode: int) -> tuple[Entry, int]:
        directory = self._node(parent)
        flags &= _ACCESS | os.O_TRUNC | os.O_EXCL
        fd = self._os.open(self._name(name), flags | os.O_CREAT | os.O_NOFOLLOW, mode,
                           dir_fd=directory)
        try:
            entry = self.lookup(parent, name)
        except OSError:
            self._os.close(fd)
            raise
        return entry, self._new_fh(self._files, fd)

    def read(self, fh: int, offset: int, size: int) -> bytes:
        return self._os.pread(self._fd(fh), size, offset)

    def write(self, fh: int, offset: int, data: bytes) -> int:
        return self._os.pwrite(self._fd(fh), data, offset)

    def flush(self, fh: int) -> None:
        self._fd(fh)

    def fsync(self, fh: int, datasync: bool = False) -> None:
        self._os.fsync(self._fd(fh), datasync)

    def release(self, fh: int) -> None:
        fd = self._fd(fh)
        del self._files[fh]
        self._os.close(fd)

    def opendir(self, nodeid: int) -> int:
        fd = self._os.open(self._proc(self._node(nodeid)), os.O_RDONLY | os.O_DIRECTORY)
        return self._new_fh(self._dirs, fd)

    def readdir(self, fh: int) -> list[DirEntry]:
        fd = self._fd(fh, self._dirs)
        return [DirEntry(ino, i + 1, kind, name)
                for i, (ino, kind, name) in enumerate(self._os.entries(fd))]

    def releasedir(self, fh: int) -> None:
        self._fd(fh, self._dirs)
        self._os.close(self._dirs.pop(fh))

    def statfs(self, nodeid: int) -> os.statvfs_result:
        return self._os.statvfs(self._node(nodeid))

    # Links, special files, extended attributes, space: the syscalls, on the inode each
    # nodeid pins (xattr calls take its /proc link and never open it)
    def link(self, nodeid: int, newparent: int, newname: bytes) -> Entry:
        directory, source = self._node(newparent), self._node(nodeid)
        os.link(self._proc(source), self._name(newname), dst_dir_fd=directory)
        return self.lookup(newparent, newname)

    def mknod(self, parent: int, name: bytes, mode: int) -> Entry:
        directory = self._node(parent)  # a stale nodeid is refused before a bad name
        os.mknod(self._name(name), mode, 0, dir_fd=directory)
        return self.lookup(parent, name)

    def setxattr(self, nodeid: int, name: bytes, value: bytes, flags: int) -> None:
        os.setxattr(self._proc(self._node(nodeid)), name, value, flags)

    def getxattr(self, nodeid: int, name: bytes, size: int) -> bytes | int:
        value = os.getxattr(self._proc(self._node(nodeid)), name)
        return _fitted(value, size)

    def listxattr(self, nodeid: int, size: int) -> tuple[bytes, ...] | int:
        names = [os.fsencode(n) for n in os.listxattr(self._proc(self._node(nodeid)))]
        listed = _fitted(b"".join(n + b"\0" for n in names), size)
        return listed if isinstance(listed, int) else tuple(sorted(names))

    def removexattr(self, nodeid: int, name: bytes) -> None:
        os.removexattr(self._proc(self._node(nodeid)), name)

    def fallocate(self, fh: int, offset: int, length: int, mode: int) -> None:
        _check(_libc.fallocate(self._fd(fh), mode, ctypes.c_int64(offset),
                               ctypes.c_int64(length)))

    def syncfs(self, nodeid: int) -> None:
        self._node(nodeid)  # any live nodeid names the export, as the kernel's root does
        fd = os.open(self._proc(self._node(ROOT_NODEID)), os.O_RDONLY | os.O_DIRECTORY)
        try:
            _check(_libc.syncfs(fd))
        finally:
            os.close(fd)

    # Memory
    def _window(self) -> GuestMemory:
        if self.window is None:
            raise OSError(errno.ENOSYS, "no DAX window")
        return self.window

    def setupmapping(self, fh: int, foffset: int, length: int, writable: bool,
                     moffset: int) -> None:
        self._window().map(self._fd(fh), foffset, length, moffset, writable)

    def removemapping(self, moffset: int, length: int) -> None:
        self._window().unmap(moffset, length)

    def load(self, moffset: int, size: int) -> bytes:
        return self._window().load(moffset, size)

    def store(self, moffset: int, data: bytes) -> None:
        self._window().store(moffset, data)

    def close(self) -> None:
        if self.window is not None:
            self.window.close()
            self.window = None
        for table in (self._files, self._dirs):
            for fd in table.values():
                self._os.close(fd)
            table.clear()
        for fd, _ in self._nodes.values():
            self._os.close(fd)
        self._nodes.clear()
        self._by_inode.clear()


def _check(result: int) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _fitted(data: bytes, size: int) -> bytes | int:
    """getxattr(2)'s and listxattr(2)'s rule: size 0 asks for the length, a smaller
    buffer than the data is ERANGE."""
    if size == 0:
        return len(data)
    if len(data) > size:
        raise OSError(errno.ERANGE, "buffer too small")
    return data
