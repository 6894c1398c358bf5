"""/dev/fuse and the kernel calls around it: mount, unmount, backing files.

A FUSE mount is a descriptor of /dev/fuse handed to mount(2) as `fd=N`; the kernel
then queues requests on it until the mount goes, when read(2) fails with ENODEV.
"""

from __future__ import annotations

import errno
import os

from pagefs.impl.mount._fusedev import ffi, lib

FSTYPE = "fuse.pagefs"
ROOT_MODE = 0o40000  # the root's S_IFDIR; its permission bits come from GETATTR


def _raise_errno(what: str) -> None:
    err = ffi.errno
    raise OSError(err, f"{what}: {os.strerror(err)}")


class FuseDevice:
    """One open /dev/fuse mounted at `mountpoint` (mounted on construction)."""

    def __init__(self, mountpoint: str, *, read_only: bool, allow_other: bool,
                 source: str = "pagefs") -> None:
        self.mountpoint = os.path.abspath(mountpoint)
        self.fd = os.open("/dev/fuse", os.O_RDWR | os.O_CLOEXEC)
        data = (f"fd={self.fd},rootmode={ROOT_MODE:o},user_id={os.getuid()},"
                f"group_id={os.getgid()},default_permissions")
        if allow_other:
            data += ",allow_other"
        flags = lib.MS_NOSUID | lib.MS_NODEV | (lib.MS_RDONLY if read_only else 0)
        if lib.pagefs_mount(source.encode(), self.mountpoint.encode(), FSTYPE.encode(), flags,
                            data.encode()) != 0:
            err = ffi.errno
            os.close(self.fd)
            raise OSError(err, f"mount on {self.mountpoint}: {os.strerror(err)}")
        self.mounted = True

    def read(self, size: int) -> bytes | None:
        """The next request, or None once the mount is gone."""
        while True:
            try:
                return os.read(self.fd, size)
            except OSError as e:
                if e.errno == errno.ENOENT:  # the request was interrupted before we read it
                    continue
                if e.errno == errno.ENODEV:
                    return None
                raise

    def write(self, reply: bytes) -> None:
        """Sends a reply; one whose request was interrupted meanwhile (ENOENT), or that
        comes after the device was closed, is dropped."""
        if self.fd < 0:
            return
        try:
            os.write(self.fd, reply)
        except OSError as e:
            if e.errno not in (errno.ENOENT, errno.ENODEV):
                raise

    def backing_open(self, backing_fd: int) -> int:
        """Registers a host file for passthrough; the kernel's id for it."""
        backing_id = lib.pagefs_backing_open(self.fd, backing_fd)
        if backing_id < 0:
            _raise_errno("FUSE_DEV_IOC_BACKING_OPEN")
        return backing_id

    def backing_open_and_close(self, backing_fd: int) -> int:
        """backing_open, then close the fd (the kernel holds the file from then on)."""
        try:
            return self.backing_open(backing_fd)
        finally:
            os.close(backing_fd)

    def backing_close(self, backing_id: int) -> None:
        if lib.pagefs_backing_close(self.fd, backing_id) != 0:
            _raise_errno("FUSE_DEV_IOC_BACKING_CLOSE")

    def unmount(self) -> None:
        """Unmounts; lazily when files are still open, so the caller never waits on them."""
        if not self.mounted:
            return
        if lib.pagefs_umount(self.mountpoint.encode(), 0) != 0:
            if ffi.errno != errno.EBUSY or \
                    lib.pagefs_umount(self.mountpoint.encode(), lib.MNT_DETACH) != 0:
                if ffi.errno != errno.EINVAL:  # EINVAL: someone unmounted it already
                    _raise_errno(f"umount {self.mountpoint}")
        self.mounted = False

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
