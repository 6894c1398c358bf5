"""The system calls of a syscall-view guest, made inside a real VM by its agent.

`AgentSystem` is `targets.system.System` with every call sent to the guest agent
(agent.c) and answered by the guest kernel, so a `PathGuest` over it judges the VM's
whole stack: its kernel's virtio-fs or 9p client and the back-end behind it. Descriptors
are the agent's, paths are the guest's; `AgentWindow` is the window inside the agent.
"""

from __future__ import annotations

import errno
import os

from pagefs.conformance.targets.system import GuestMemory, System
from pagefs.conformance.targets.window import Window
from pagefs.conformance.vm.agent import AT_FDCWD, Agent, ints, stat_result

AT_REMOVEDIR = 0x200


def _dir(dir_fd: int | None) -> int:
    return AT_FDCWD if dir_fd is None else dir_fd


class AgentWindow(Window):
    """A window reserved in the agent's address space; the checks are Window's."""

    def __init__(self, agent: Agent, size: int) -> None:
        self._agent = agent
        super().__init__(size)

    def _reserve(self) -> None:
        self._agent.call("window", self.size)
        self.base = 1  # open (the agent's address is its own)

    def _map_at(self, fd: int, foffset: int, length: int, moffset: int,
                writable: bool) -> None:
        self._agent.call("map", fd, foffset, length, moffset, int(writable))

    def _unmap_at(self, moffset: int, length: int) -> None:
        self._agent.call("unmap", moffset, length)

    def _read(self, moffset: int, size: int) -> bytes:
        try:
            return self._agent.call("load", moffset, size)[0]
        except OSError as e:
            if e.errno != errno.EFAULT:
                raise
            return b""

    def _write(self, moffset: int, data: bytes) -> int:
        try:
            self._agent.call("store", moffset, data)
        except OSError as e:
            if e.errno != errno.EFAULT:
                raise
            return 0
        return len(data)

    def close(self) -> None:
        if self.base:
            self._agent.call("window", 0)
            self.base = 0


class AgentSystem(System):
    """The guest kernel, through its agent."""

    def __init__(self, agent: Agent) -> None:
        self._agent = agent

    def open(self, path: str | bytes, flags: int, mode: int = 0o777, *,
             dir_fd: int | None = None) -> int:
        return int(self._agent.call("open", _dir(dir_fd), path, flags, mode)[0])

    def close(self, fd: int) -> None:
        self._agent.call("close", fd)

    def stat(self, what: int | str) -> os.stat_result:
        if isinstance(what, int):
            return stat_result(self._agent.call("stat", what, b"", 0))
        return stat_result(self._agent.call("stat", AT_FDCWD, what, 0))

    def ftruncate(self, fd: int, size: int) -> None:
        self._agent.call("ftruncate", fd, size)

    def truncate(self, path: str, size: int) -> None:
        self._agent.call("truncate", path, size)

    def chmod(self, path: str, mode: int) -> None:
        self._agent.call("chmod", AT_FDCWD, path, mode)

    def utime_ns(self, path: str, atime_ns: int, mtime_ns: int) -> None:
        self._agent.call("utimens", AT_FDCWD, path, atime_ns, mtime_ns)

    def readlink_fd(self, fd: int) -> bytes:
        return self._agent.call("readlink", fd, b"")[0]

    def symlink(self, target: bytes, name: bytes, dir_fd: int) -> None:
        self._agent.call("symlink", target, dir_fd, name)

    def mkdir(self, name: bytes, mode: int, dir_fd: int) -> None:
        self._agent.call("mkdir", dir_fd, name, mode)

    def unlink(self, name: bytes, dir_fd: int) -> None:
        self._agent.call("unlink", dir_fd, name, 0)

    def rmdir(self, name: bytes, dir_fd: int) -> None:
        self._agent.call("unlink", dir_fd, name, AT_REMOVEDIR)

    def renameat2(self, src_fd: int, name: bytes, dst_fd: int, newname: bytes,
                  flags: int) -> None:
        self._agent.call("rename", src_fd, name, dst_fd, newname, flags)

    def pread(self, fd: int, size: int, offset: int) -> bytes:
        return self._agent.call("pread", fd, size, offset)[0]

    def pwrite(self, fd: int, data: bytes, offset: int) -> int:
        return int(self._agent.call("pwrite", fd, offset, data)[0])

    def fsync(self, fd: int, datasync: bool) -> None:
        self._agent.call("fsync", fd, int(datasync))

    def entries(self, fd: int) -> list[tuple[int, int, bytes]]:
        fields = self._agent.call("readdir", fd)
        return [(int(fields[i]), int(fields[i + 1]), fields[i + 2])
                for i in range(0, len(fields), 3)]

    def statvfs(self, fd: int) -> os.statvfs_result:
        values = ints(self._agent.call("statvfs", fd))
        return os.statvfs_result((*values, 0))  # f_fsid is not carried

    def window(self, size: int) -> GuestMemory:
        return AgentWindow(self._agent, size)
