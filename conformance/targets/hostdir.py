"""The host side of every shipped target: the host's own syscalls on the export directory."""

from __future__ import annotations

import errno
import os

from pagefs.conformance.target import Host


class HostDir(Host):
    """Host operations as plain syscalls on a real directory (paths relative to it)."""

    def __init__(self, root: str) -> None:
        self.root = root

    def _path(self, path: str) -> str:
        # The suite only names paths inside the export; refuse anything else loudly.
        if path.startswith("/") or ".." in path.split("/"):
            raise OSError(errno.EINVAL, f"host path outside the export: {path!r}")
        return os.path.join(self.root, path)

    def write(self, path: str, offset: int, data: bytes) -> None:
        fd = os.open(self._path(path), os.O_WRONLY | os.O_NOFOLLOW)
        try:
            os.pwrite(fd, data, offset)
        finally:
            os.close(fd)

    def read(self, path: str, offset: int, size: int) -> bytes:
        fd = os.open(self._path(path), os.O_RDONLY | os.O_NOFOLLOW)
        try:
            return os.pread(fd, size, offset)
        finally:
            os.close(fd)

    def truncate(self, path: str, size: int) -> None:
        os.truncate(self._path(path), size)

    def create(self, path: str, mode: int = 0o644) -> None:
        os.close(os.open(self._path(path), os.O_CREAT | os.O_EXCL | os.O_WRONLY, mode))

    def unlink(self, path: str) -> None:
        os.unlink(self._path(path))

    def rename(self, old: str, new: str) -> None:
        os.rename(self._path(old), self._path(new))

    def mkdir(self, path: str, mode: int = 0o755) -> None:
        os.mkdir(self._path(path), mode)

    def rmdir(self, path: str) -> None:
        os.rmdir(self._path(path))

    def chmod(self, path: str, mode: int) -> None:
        os.chmod(self._path(path), mode, follow_symlinks=False)

    def symlink(self, target: str, path: str) -> None:
        os.symlink(target, self._path(path))

    def mkfifo(self, path: str) -> None:
        os.mkfifo(self._path(path))

    def stat(self, path: str) -> os.stat_result:
        return os.stat(self._path(path), follow_symlinks=False)
