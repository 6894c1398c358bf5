"""The system calls a syscall-view guest (PathGuest) makes, and where it makes them.

`LocalSystem` is this process's own kernel (the `local`, `bindfs` and `mount:` targets);
the `vm:` targets make the same calls inside a real guest through its agent
(`pagefs.conformance.vm.remote.AgentSystem`). A PathGuest translates FUSE requests into
these calls and never knows which kernel answers.
"""

from __future__ import annotations

import ctypes
import os
import stat
from abc import ABC, abstractmethod
from typing import Protocol

from pagefs.conformance.targets.window import Window

_libc = ctypes.CDLL(None, use_errno=True)  # renameat2: os.rename has no flags


class GuestMemory(Protocol):
    """A DAX-window-shaped piece of guest address space (targets/window.py's contract)."""

    def map(self, fd: int, foffset: int, length: int, moffset: int,
            writable: bool) -> None: ...
    def unmap(self, moffset: int, length: int) -> None: ...
    def load(self, moffset: int, size: int) -> bytes: ...
    def store(self, moffset: int, data: bytes) -> None: ...
    def close(self) -> None: ...


class System(ABC):
    """The calls, in os's shapes; `dir_fd` None means the current directory."""

    @abstractmethod
    def open(self, path: str | bytes, flags: int, mode: int = 0o777, *,
             dir_fd: int | None = None) -> int: ...
    @abstractmethod
    def close(self, fd: int) -> None: ...
    @abstractmethod
    def stat(self, what: int | str) -> os.stat_result:
        """fstat of a descriptor, or stat of a path (following symlinks)."""
    @abstractmethod
    def ftruncate(self, fd: int, size: int) -> None: ...
    @abstractmethod
    def truncate(self, path: str, size: int) -> None: ...
    @abstractmethod
    def chmod(self, path: str, mode: int) -> None: ...
    @abstractmethod
    def utime_ns(self, path: str, atime_ns: int, mtime_ns: int) -> None: ...
    @abstractmethod
    def readlink_fd(self, fd: int) -> bytes:
        """The target of the symlink an O_PATH descriptor holds."""
    @abstractmethod
    def symlink(self, target: bytes, name: bytes, dir_fd: int) -> None: ...
    @abstractmethod
    def mkdir(self, name: bytes, mode: int, dir_fd: int) -> None: ...
    @abstractmethod
    def unlink(self, name: bytes, dir_fd: int) -> None: ...
    @abstractmethod
    def rmdir(self, name: bytes, dir_fd: int) -> None: ...
    @abstractmethod
    def renameat2(self, src_fd: int, name: bytes, dst_fd: int, newname: bytes,
                  flags: int) -> None: ...
    @abstractmethod
    def pread(self, fd: int, size: int, offset: int) -> bytes: ...
    @abstractmethod
    def pwrite(self, fd: int, data: bytes, offset: int) -> int: ...
    @abstractmethod
    def fsync(self, fd: int, datasync: bool) -> None: ...
    @abstractmethod
    def entries(self, fd: int) -> list[tuple[int, int, bytes]]:
        """A directory's entries but "." and "..": (inode, file type as S_IFMT >> 12, name)."""
    @abstractmethod
    def statvfs(self, fd: int) -> os.statvfs_result: ...
    @abstractmethod
    def window(self, size: int) -> GuestMemory: ...


class LocalSystem(System):
    """This process's kernel."""

    def open(self, path: str | bytes, flags: int, mode: int = 0o777, *,
             dir_fd: int | None = None) -> int:
        return os.open(path, flags, mode, dir_fd=dir_fd)

    def close(self, fd: int) -> None:
        os.close(fd)

    def stat(self, what: int | str) -> os.stat_result:
        return os.stat(what)

    def ftruncate(self, fd: int, size: int) -> None:
        os.ftruncate(fd, size)

    def truncate(self, path: str, size: int) -> None:
        os.truncate(path, size)

    def chmod(self, path: str, mode: int) -> None:
        os.chmod(path, mode)

    def utime_ns(self, path: str, atime_ns: int, mtime_ns: int) -> None:
        os.utime(path, ns=(atime_ns, mtime_ns))

    def readlink_fd(self, fd: int) -> bytes:
        return os.readlink(b"", dir_fd=fd)

    def symlink(self, target: bytes, name: bytes, dir_fd: int) -> None:
        os.symlink(target, name, dir_fd=dir_fd)

    def mkdir(self, name: bytes, mode: int, dir_fd: int) -> None:
        os.mkdir(name, mode, dir_fd=dir_fd)

    def unlink(self, name: bytes, dir_fd: int) -> None:
        os.unlink(name, dir_fd=dir_fd)

    def rmdir(self, name: bytes, dir_fd: int) -> None:
        os.rmdir(name, dir_fd=dir_fd)

    def renameat2(self, src_fd: int, name: bytes, dst_fd: int, newname: bytes,
                  flags: int) -> None:
        if _libc.renameat2(src_fd, name, dst_fd, newname, flags) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))

    def pread(self, fd: int, size: int, offset: int) -> bytes:
        return os.pread(fd, size, offset)

    def pwrite(self, fd: int, data: bytes, offset: int) -> int:
        return os.pwrite(fd, data, offset)

    def fsync(self, fd: int, datasync: bool) -> None:
        (os.fdatasync if datasync else os.fsync)(fd)

    def entries(self, fd: int) -> list[tuple[int, int, bytes]]:
        with os.scandir(fd) as it:
            return [(e.inode(), stat.S_IFMT(e.stat(follow_symlinks=False).st_mode) >> 12,
                     os.fsencode(e.name)) for e in it]

    def statvfs(self, fd: int) -> os.statvfs_result:
        return os.statvfs(fd)

    def window(self, size: int) -> GuestMemory:
        return Window(size)


LOCAL = LocalSystem()
