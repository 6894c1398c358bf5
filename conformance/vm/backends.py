"""The back-ends a test guest can boot against, each as a context manager yielding a `Share`:
the QEMU arguments that attach it and the guest's mount command.

    pagefs     pagefs-host on a vhost-user socket, `vhost-user-fs-pci`
    virtiofsd  QEMU 7.2's C virtiofsd, `vhost-user-fs-pci`
    9p         QEMU's own `-virtfs` (no daemon)
    pagefs-dax pagefs-host through QEMU 11.1's `vhost-user-test-device-pci` with its DAX
               window (VIRTIO shared memory), mounted `-o dax=always`

Every back-end exports `shared_dir` (read-only when asked, where it can) under a tag
(default `pagefs`, also the QEMU id of its device), mounted at /mnt/TAG in the guest;
a machine may carry several (a writable and a read-only export). Leaving the `with`
block ends whatever it started.
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


class BackendError(RuntimeError):
    """A back-end cannot run here; the message says why."""


@dataclass
class Share:
    """What the machine needs to attach a back-end and what the guest runs to mount it."""

    name: str
    qemu_args: list[str]
    mount: str  # the guest's mount command
    read_only: bool
    mountpoint: str
    log: Callable[[], str] = field(default=lambda: "")
    alive: Callable[[], bool] = field(default=lambda: True)


def _vhost_user(socket_path: str, tag: str) -> list[str]:
    return ["-chardev", f"socket,id={tag},path={socket_path}",
            "-device", f"vhost-user-fs-pci,chardev={tag},tag={tag}"]


def _mount(kind: str, tag: str, options: str = "") -> tuple[str, str]:
    """The guest's mount command for `tag`, and where it mounts."""
    point = f"/mnt/{tag}"
    return f"mkdir -p {point} && mount -t {kind}{options} {tag} {point}", point


@contextlib.contextmanager
def pagefs(shared_dir: str, read_only: bool = False, *, tag: str = TAG, dax: bool = False,
           options: tuple[str, ...] = ()) -> Iterator[Share]:
    from pagefs.impl.client.host_daemon import host_daemon
    if dax:  # the generic device asks the back-end for its config; QEMU maps fds writable
        options = (*options, "--tag", tag, "--writable-map-fds")
    with host_daemon(shared_dir, read_only=read_only,
                     options=options) as daemon:
        if dax:
            args = ["-chardev", f"socket,id={tag},path={daemon.socket_path}",
                    "-device", DAX_DEVICE.replace("chardev=fs", f"chardev={tag}")]
            mount, point = _mount("virtiofs", tag, " -o dax=always")
        else:
            args = _vhost_user(daemon.socket_path, tag)
            mount, point = _mount("virtiofs", tag)
        yield Share("pagefs-dax" if dax else "pagefs", args, mount, read_only, point,
                    daemon.log, daemon.alive)


@contextlib.contextmanager
def virtiofsd(shared_dir: str, read_only: bool = False, *, tag: str = TAG,
              cache: str = "auto") -> Iterator[Share]:
    from pagefs.impl.client.virtiofsd import Virtiofsd
    if read_only:
        raise BackendError("QEMU 7.2's virtiofsd has no read-only export option")
    with Virtiofsd(shared_dir, cache=cache) as daemon:
        assert daemon.process is not None
        process = daemon.process
        mount, point = _mount("virtiofs", tag)
        yield Share("virtiofsd", _vhost_user(daemon.socket_path, tag), mount, False, point,
                    daemon.log_text, lambda: process.poll() is None)


@contextlib.contextmanager
def ninep(shared_dir: str, read_only: bool = False, *, tag: str = TAG) -> Iterator[Share]:
    # cache=mmap: the one 9p mode in which the guest may mmap MAP_SHARED and write.
    ro = ",readonly=on" if read_only else ""
    mount, point = _mount("9p", tag, " -o trans=virtio,version=9p2000.L,cache=mmap,"
                                     "msize=524288")
    yield Share("9p", ["-virtfs", f"local,path={shared_dir},mount_tag={tag},"
                                  f"security_model=passthrough,id={tag}{ro}"],
                mount, read_only, point)


def start(name: str, shared_dir: str, read_only: bool = False, tag: str = TAG
          ) -> contextlib.AbstractContextManager[Share]:
    """The back-end called `name` exporting `shared_dir` under `tag`."""
    if name == "pagefs":
        return pagefs(shared_dir, read_only, tag=tag)
    if name == "pagefs-dax":
        return pagefs(shared_dir, read_only, tag=tag, dax=True)
    if name == "virtiofsd":
        return virtiofsd(shared_dir, read_only, tag=tag)
    if name == "9p":
        return ninep(shared_dir, read_only, tag=tag)
    raise BackendError(f"unknown back-end {name!r}; known: {', '.join(NAMES)}")
