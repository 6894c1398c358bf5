"""The same guest driver on QEMU's C virtiofsd, a back-end without a DAX window:
everything works through the READ/WRITE fallback, and mmap says ENODEV."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from pagefs.impl.client.virtiofsd import Virtiofsd
from pagefs.impl.guest.connect import connect

pytestmark = pytest.mark.needs_root


def test_virtiofsd_serves_the_guest_by_read_and_write(tmp_path: Path) -> None:
    (tmp_path / "host-file").write_bytes(b"from the host")
    with Virtiofsd(tmp_path, cache="none") as daemon, connect(daemon.socket_path) as share:
        assert not share.dax
        assert share.read_file("host-file") == b"from the host"
        share.mkdir("d")
        share.write_file("d/g", b"x" * 300_000)  # several WRITE messages
        assert (tmp_path / "d" / "g").read_bytes() == b"x" * 300_000
        with share.open("d/g", os.O_RDWR) as f:
            (tmp_path / "d" / "g").write_bytes(b"host rewrote it")  # COH-READ by READ
            assert f.pread(100, 0) == b"host rewrote it"
            with pytest.raises(OSError) as err:
                share.mmap(f, 0, 4096)
            assert err.value.errno == errno.ENODEV
        share.rename("d/g", "h")
        assert sorted(share.listdir()) == ["d", "h", "host-file"]
        share.unlink("h")
        share.rmdir("d")
        with pytest.raises(FileNotFoundError):
            share.stat("h")
