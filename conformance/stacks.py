"""File-sharing stacks mounted on a local directory, for running unmodified programs.

    with mounted_stack("pagefs-mount", workdir) as path:
        subprocess.run(["git", "init"], cwd=path)

Each stack exports a fresh host directory under `workdir` and mounts it at another:
pagefs-mount over pagefs-host (files passed through, or `-relay`: READ/WRITE relayed),
over the Rust virtiofsd, over QEMU's C virtiofsd, and bindfs. Leaving the block
unmounts and stops every process the stack started.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager

# pagefs-host holds a descriptor for every name the guest's kernel keeps looked up, and a
# kernel keeps names until memory runs short: a mount that walks a git repository needs
# more than the default share of the daemon's descriptors.
FDS_PER_GUEST = "15000"


def _pagefs_host(passthrough: bool) -> Callable[[str, str], AbstractContextManager[str]]:
    @contextmanager
    def stack(export: str, mountpoint: str) -> Iterator[str]:
        from pagefs.impl.client.host_daemon import host_daemon
        from pagefs.impl.client.mount_process import pagefs_mount
        with host_daemon(export, options=("--fds-per-guest", FDS_PER_GUEST)) as host, \
                pagefs_mount(host.socket_path, mountpoint, passthrough=passthrough) as mount:
            if passthrough and not mount.passthrough:
                raise OSError(f"pagefs-mount passed no file through: {mount.log()}")
            yield mountpoint
    return stack


@contextmanager
def _rust_virtiofsd(export: str, mountpoint: str) -> Iterator[str]:
    from pagefs.impl.client.mount_process import pagefs_mount
    from pagefs.impl.client.virtiofsd_rust import RustVirtiofsd
    with RustVirtiofsd(export, cache="auto") as daemon, \
            pagefs_mount(daemon.socket_path, mountpoint):
        yield mountpoint


@contextmanager
def _c_virtiofsd(export: str, mountpoint: str) -> Iterator[str]:
    from pagefs.impl.client.mount_process import pagefs_mount
    from pagefs.impl.client.virtiofsd import Virtiofsd
    with Virtiofsd(export, cache="auto") as daemon, \
            pagefs_mount(daemon.socket_path, mountpoint):
        yield mountpoint


@contextmanager
def _bindfs(export: str, mountpoint: str) -> Iterator[str]:
    from pagefs.conformance.targets.bindfs import mounted
    with mounted(export, mountpoint):
        yield mountpoint


@contextmanager
def _local(export: str, mountpoint: str) -> Iterator[str]:
    yield export  # the host directory itself: what every stack is measured against


STACKS: dict[str, tuple[str, Callable[[str, str], AbstractContextManager[str]]]] = {
    "pagefs-mount": ("pagefs-mount over pagefs-host, files passed through",
                     _pagefs_host(True)),
    "pagefs-mount-relay": ("pagefs-mount over pagefs-host, READ/WRITE relayed",
                           _pagefs_host(False)),
    "virtiofsd-rust": ("pagefs-mount over the Rust virtiofsd 1.14 (cache=auto)",
                       _rust_virtiofsd),
    "virtiofsd": ("pagefs-mount over QEMU 7.2's C virtiofsd (cache=auto)", _c_virtiofsd),
    "bindfs": ("bindfs (fuse3) of the host directory", _bindfs),
    "local": ("the host directory itself, no FUSE", _local),
}


@contextmanager
def mounted_stack(name: str, workdir: str) -> Iterator[str]:
    """The stack `name` exporting WORKDIR/export at WORKDIR/mnt: the path to use."""
    if name not in STACKS:
        raise ValueError(f"unknown stack {name!r}; known: {', '.join(STACKS)}")
    export, mountpoint = os.path.join(workdir, "export"), os.path.join(workdir, "mnt")
    os.makedirs(export, exist_ok=True)
    os.makedirs(mountpoint, exist_ok=True)
    with ExitStack() as stack:
        yield stack.enter_context(STACKS[name][1](export, mountpoint))
