"""A guest that speaks FUSE on the real virtio-fs/vhost-user wire: any back-end.

The requests go through pagefs's front-end and FUSE client (guest memory, virtqueues,
vhost-user) to whatever back-end listens on the socket: pagefs-host, QEMU's virtiofsd,
or a third party's daemon. Nodeids and handles are the back-end's own. When the back-end
maps file pages into the guest's DAX window (vhost-user SHMEM), loads and stores are real
memory accesses on those pages, through the guest layer's fault-contained copies.
"""

from __future__ import annotations

import errno
import os

from pagefs.conformance.target import ROOT_NODEID, DirEntry, Entry, Guest
from pagefs.impl.client.fuse_client import FuseClient
from pagefs.impl.guest import safemem
from pagefs.impl.protocol import replies


def stat_of(attr: replies.Attr) -> os.stat_result:
    """A FUSE attr as the os.stat_result the suite compares."""
    return attr.to_stat()


def entry_of(out: replies.EntryOut) -> Entry:
    return Entry(out.nodeid, out.generation, stat_of(out.attr))


class FuseGuest(Guest):
    """Target requests as FUSE requests; the nodeid each handle was opened on is kept,
    since FUSE names both in READ, WRITE, RELEASE and the mapping requests."""

    def __init__(self, socket_path: str, *, window_size: int | None = 0) -> None:
        self.client = FuseClient.connect(socket_path, window_size=window_size)
        self._node_of: dict[int, int] = {}
        self.window = self.client.window if self.client.map_alignment is not None else None
        if self.window is not None:
            safemem.register_window(self.window.base, self.window.size)

    @property
    def window_size(self) -> int:
        return self.window.size if self.window is not None else 0

    def _nodeid(self, fh: int) -> int:
        # A handle the guest never got still goes out, on the root: the back-end must
        # refuse it by its handle (HANDLE), whatever the nodeid says.
        return self._node_of.get(fh, ROOT_NODEID)

    def act_as(self, uid: int, gid: int, umask: int) -> None:
        self.client.act_as(uid, gid, umask)

    def lookup(self, parent: int, name: bytes) -> Entry:
        return entry_of(self.client.lookup(parent, name))

    def forget(self, nodeid: int, nlookup: int) -> None:
        self.client.forget(nodeid, nlookup)
        self.client.settle()  # FORGET has no reply: the suite's next step must follow it

    def getattr(self, nodeid: int, fh: int | None = None) -> os.stat_result:
        return stat_of(self.client.getattr(nodeid, fh).attr)

    def setattr(self, nodeid: int, fh: int | None = None, *, size: int | None = None,
                mode: int | None = None, mtime_ns: int | None = None) -> os.stat_result:
        out = self.client.setattr(nodeid, fh, size=size, mode=mode, mtime_ns=mtime_ns)
        return stat_of(out.attr)

    def readlink(self, nodeid: int) -> bytes:
        return self.client.readlink(nodeid)

    def symlink(self, parent: int, name: bytes, target: bytes) -> Entry:
        return entry_of(self.client.symlink(parent, name, target))

    def mkdir(self, parent: int, name: bytes, mode: int) -> Entry:
        return entry_of(self.client.mkdir(parent, name, mode))

    def unlink(self, parent: int, name: bytes) -> None:
        self.client.unlink(parent, name)

    def rmdir(self, parent: int, name: bytes) -> None:
        self.client.rmdir(parent, name)

    def rename(self, parent: int, name: bytes, newparent: int, newname: bytes,
               flags: int = 0) -> None:
        self.client.rename(parent, name, newparent, newname, flags)

    def open(self, nodeid: int, flags: int) -> int:
        fh = self.client.open(nodeid, flags).fh
        self._node_of[fh] = nodeid
        return fh

    def create(self, parent: int, name: bytes, flags: int, mode: int) -> tuple[Entry, int]:
        out = self.client.create(parent, name, flags, mode)
        self._node_of[out.open.fh] = out.entry.nodeid
        return entry_of(out.entry), out.open.fh

    def read(self, fh: int, offset: int, size: int) -> bytes:
        return self.client.read(self._nodeid(fh), fh, offset, size)

    def write(self, fh: int, offset: int, data: bytes) -> int:
        return self.client.write(self._nodeid(fh), fh, offset, data)

    def flush(self, fh: int) -> None:
        self.client.flush(self._nodeid(fh), fh)

    def fsync(self, fh: int, datasync: bool = False) -> None:
        self.client.fsync(self._nodeid(fh), fh, datasync)

    def release(self, fh: int) -> None:
        self.client.release(self._nodeid(fh), fh)

    def opendir(self, nodeid: int) -> int:
        fh = self.client.opendir(nodeid).fh
        self._node_of[fh] = nodeid
        return fh

    def readdir(self, fh: int) -> list[DirEntry]:
        entries: list[DirEntry] = []
        offset = 0
        while True:
            batch = self.client.readdir(self._nodeid(fh), fh, offset)
            if not batch:
                return [e for e in entries if e.name not in (b".", b"..")]
            entries += [DirEntry(d.ino, d.off, d.type, d.name) for d in batch]
            offset = batch[-1].off

    def releasedir(self, fh: int) -> None:
        self.client.releasedir(self._nodeid(fh), fh)

    def reinit(self) -> None:
        self.client.init()

    def link(self, nodeid: int, newparent: int, newname: bytes) -> Entry:
        return entry_of(self.client.link(nodeid, newparent, newname))

    def mknod(self, parent: int, name: bytes, mode: int) -> Entry:
        return entry_of(self.client.mknod(parent, name, mode))

    def setxattr(self, nodeid: int, name: bytes, value: bytes, flags: int) -> None:
        self.client.setxattr(nodeid, name, value, flags)

    def getxattr(self, nodeid: int, name: bytes, size: int) -> bytes | int:
        return self.client.getxattr(nodeid, name, size)

    def listxattr(self, nodeid: int, size: int) -> tuple[bytes, ...] | int:
        names = self.client.listxattr(nodeid, size)
        return names if isinstance(names, int) else tuple(sorted(names))

    def removexattr(self, nodeid: int, name: bytes) -> None:
        self.client.removexattr(nodeid, name)

    def fallocate(self, fh: int, offset: int, length: int, mode: int) -> None:
        self.client.fallocate(self._nodeid(fh), fh, offset, length, mode)

    def syncfs(self, nodeid: int) -> None:
        self.client.syncfs(nodeid)

    def statfs(self, nodeid: int) -> os.statvfs_result:
        out = self.client.statfs(nodeid)
        return os.statvfs_result((out.bsize, out.frsize, out.blocks, out.bfree, out.bavail,
                                  out.files, out.ffree, out.ffree, 0, out.namelen))

    def setupmapping(self, fh: int, foffset: int, length: int, writable: bool,
                     moffset: int) -> None:
        self.client.setupmapping(self._nodeid(fh), fh, foffset, length, writable, moffset)

    def removemapping(self, moffset: int, length: int) -> None:
        self.client.removemapping([(moffset, length)])

    def _address(self, moffset: int, length: int) -> int:
        if self.window is None:
            raise OSError(errno.ENODEV, "no DAX window")
        if moffset < 0 or moffset + length > self.window.size:
            raise OSError(errno.EFAULT, "outside the window")
        return self.window.base + moffset

    def load(self, moffset: int, size: int) -> bytes:
        data = safemem.read(self._address(moffset, size), size)
        if len(data) < size:
            raise OSError(errno.EFAULT, f"load faulted at window offset {moffset + len(data)}")
        return data

    def store(self, moffset: int, data: bytes) -> None:
        done = safemem.write_from(self._address(moffset, len(data)), data)
        if done < len(data):
            raise OSError(errno.EFAULT, f"store faulted at window offset {moffset + done}")

    def close(self) -> None:
        if self.window is not None:
            safemem.unregister_window(self.window.base)
            self.window = None
        self.client.close()
