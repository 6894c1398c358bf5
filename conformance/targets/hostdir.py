"""The host side of every shipped target: the host's own syscalls on the export directory."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager

from pagefs.conformance.target import Host


class HostDir(Host):
    """Host operations as plain syscalls on a real directory (paths relative to it)."""

    def __init__(self, root: str) -> None:
        self.root = os.fsencode(root)

    def _path(self, path: bytes) -> bytes:
        # The suite only names paths inside the export; refuse anything else loudly.
        if path.startswith(b"/") or b".." in path.split(b"/"):
            raise OSError(errno.EINVAL, f"host path outside the export: {path!r}")
        return os.path.join(self.root, path)

    @contextmanager
    def _opened(self, path: bytes, flags: int) -> Iterator[int]:
        """A descriptor on the file itself (a symlink is ELOOP, never followed)."""
        fd = os.open(self._path(path), flags | os.O_NOFOLLOW)
        try:
            yield fd
        finally:
            os.close(fd)

    def write(self, path: bytes, offset: int, data: bytes) -> int:
        with self._opened(path, os.O_WRONLY) as fd:
            return os.pwrite(fd, data, offset)

    def read(self, path: bytes, offset: int, size: int) -> bytes:
        with self._opened(path, os.O_RDONLY) as fd:
            return os.pread(fd, size, offset)

    def truncate(self, path: bytes, size: int) -> None:
        with self._opened(path, os.O_WRONLY) as fd:
            os.ftruncate(fd, size)

    def create(self, path: bytes, mode: int = 0o644) -> None:
        os.close(os.open(self._path(path), os.O_CREAT | os.O_EXCL | os.O_WRONLY, mode))

    def unlink(self, path: bytes) -> None:
        os.unlink(self._path(path))

    def rename(self, old: bytes, new: bytes) -> None:
        os.rename(self._path(old), self._path(new))

    def mkdir(self, path: bytes, mode: int = 0o755) -> None:
        os.mkdir(self._path(path), mode)

    def rmdir(self, path: bytes) -> None:
        os.rmdir(self._path(path))

    def chmod(self, path: bytes, mode: int) -> None:
        # Never through a symlink: a guest may have made one pointing anywhere (/etc).
        with self._opened(path, os.O_PATH) as fd:
            if stat.S_ISLNK(os.fstat(fd).st_mode):
                raise OSError(errno.ELOOP, "host chmod of a symlink")
            os.chmod(f"/proc/self/fd/{fd}", mode)

    def symlink(self, target: bytes, path: bytes) -> None:
        os.symlink(target, self._path(path))

    def mkfifo(self, path: bytes, mode: int = 0o644) -> None:
        os.mkfifo(self._path(path), mode)

    def stat(self, path: bytes) -> os.stat_result:
        return os.stat(self._path(path), follow_symlinks=False)
