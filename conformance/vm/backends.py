"""The back-ends a test guest can boot against, each as a context manager yielding a `Share`:
the QEMU arguments that attach it and the guest's mount command.

    pagefs     pagefs-host on a vhost-user socket, `vhost-user-fs-pci`
    virtiofsd  QEMU 7.2's C virtiofsd, `vhost-user-fs-pci`
    9p         QEMU's own `-virtfs` (no daemon)
    pagefs-dax pagefs-host through QEMU 11.1's `vhost-user-test-device-pci` with its DAX
               window (VIRTIO shared memory), mounted `-o dax=always`

Every back-end exports `shared_dir` (read-only when asked, where it can) under the tag
`pagefs`; leaving the `with` block ends whatever it started.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

TAG = "pagefs"
NAMES = ("pagefs", "virtiofsd", "9p", "pagefs-dax")
# QEMU 11.1's generic vhost-user device: virtio-fs is device 26, a hiprio queue and one
# request queue, and the 40-byte config (tag[36], num_request_queues).
DAX_DEVICE = "vhost-user-test-device-pci,chardev=fs,virtio-id=26,num_vqs=2,config_size=40"
# Until pagefs-host's handshake deadline covers the vhost-user handshake only, a VMM's
# connection needs room for the guest to boot before FUSE INIT arrives.
PAGEFS_OPTIONS = ("--handshake-timeout", "3600")


class BackendError(RuntimeError):
    """A back-end cannot run here; the message says why."""


@dataclass
class Share:
    """What the machine needs to attach a back-end and what the guest runs to mount it."""

    name: str
    qemu_args: list[str]
    mount: str  # the guest's mount command, target /mnt
    read_only: bool
    log: Callable[[], str] = field(default=lambda: "")
    alive: Callable[[], bool] = field(default=lambda: True)


def _vhost_user(socket_path: str) -> list[str]:
    return ["-chardev", f"socket,id=fs,path={socket_path}",
            "-device", f"vhost-user-fs-pci,chardev=fs,tag={TAG}"]


@contextlib.contextmanager
def pagefs(shared_dir: str, read_only: bool = False, *, dax: bool = False,
           options: tuple[str, ...] = ()) -> Iterator[Share]:
    from pagefs.impl.client.host_daemon import host_daemon
    with host_daemon(shared_dir, read_only=read_only,
                     options=(*PAGEFS_OPTIONS, *options)) as daemon:
        if dax:
            args = ["-chardev", f"socket,id=fs,path={daemon.socket_path}",
                    "-device", DAX_DEVICE]
            mount = f"mount -t virtiofs -o dax=always {TAG} /mnt"
        else:
            args, mount = _vhost_user(daemon.socket_path), f"mount -t virtiofs {TAG} /mnt"
        yield Share("pagefs-dax" if dax else "pagefs", args, mount, read_only,
                    daemon.log, daemon.alive)


@contextlib.contextmanager
def virtiofsd(shared_dir: str, read_only: bool = False, *,
              cache: str = "auto") -> Iterator[Share]:
    from pagefs.impl.client.virtiofsd import Virtiofsd
    if read_only:
        raise BackendError("QEMU 7.2's virtiofsd has no read-only export option")
    with Virtiofsd(shared_dir, cache=cache) as daemon:
        assert daemon.process is not None
        process = daemon.process
        yield Share("virtiofsd", _vhost_user(daemon.socket_path),
                    f"mount -t virtiofs {TAG} /mnt", False, daemon.log_text,
                    lambda: process.poll() is None)


@contextlib.contextmanager
def ninep(shared_dir: str, read_only: bool = False) -> Iterator[Share]:
    # cache=mmap: the one 9p mode in which the guest may mmap MAP_SHARED and write.
    ro = ",readonly=on" if read_only else ""
    yield Share("9p", ["-virtfs", f"local,path={shared_dir},mount_tag={TAG},"
                                  f"security_model=passthrough,id=p9{ro}"],
                f"mount -t 9p -o trans=virtio,version=9p2000.L,cache=mmap,msize=524288 "
                f"{TAG} /mnt", read_only)


def start(name: str, shared_dir: str, read_only: bool = False
          ) -> contextlib.AbstractContextManager[Share]:
    """The back-end called `name` exporting `shared_dir`."""
    if name == "pagefs":
        return pagefs(shared_dir, read_only)
    if name == "pagefs-dax":
        return pagefs(shared_dir, read_only, dax=True)
    if name == "virtiofsd":
        return virtiofsd(shared_dir, read_only)
    if name == "9p":
        return ninep(shared_dir, read_only)
    raise BackendError(f"unknown back-end {name!r}; known: {', '.join(NAMES)}")
