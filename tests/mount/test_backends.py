"""pagefs-mount serves any virtio-fs back-end: QEMU's C virtiofsd and the Rust virtiofsd,
neither of which donates fds, so READ and WRITE are relayed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pagefs.conformance.exerciser import run as exercise
from pagefs.impl.client.mount_process import pagefs_mount
from pagefs.impl.client.virtiofsd import Virtiofsd
from pagefs.impl.client.virtiofsd_rust import RustVirtiofsd


def _daemon(kind: str, export: Path):
    if kind == "c":
        return Virtiofsd(export, cache="auto")
    return RustVirtiofsd(export, cache="auto")


@pytest.mark.parametrize("kind", ["c", "rust"])
def test_mount_over_virtiofsd(kind, export, mountpoint, request):
    if kind == "rust":
        request.getfixturevalue("rust_virtiofsd")
    with _daemon(kind, export) as daemon, \
            pagefs_mount(daemon.socket_path, str(mountpoint)) as mount:
        assert not mount.passthrough, mount.log()  # no DAX window, no donated fds
        assert (mountpoint / "file").read_bytes() == b"0123456789"
        (mountpoint / "sub").mkdir()
        (mountpoint / "sub" / "new").write_bytes(b"through virtiofsd")
        assert (export / "sub" / "new").read_bytes() == b"through virtiofsd"
        outcome = exercise(str(mountpoint / "sub" / "fsx"), ops=2_000, seed=4)
        assert outcome.held, outcome.output
        os.unlink(mountpoint / "sub" / "fsx")
