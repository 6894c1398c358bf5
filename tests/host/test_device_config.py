"""The virtio-fs config space a VMM's generic vhost-user device (QEMU's
vhost-user-test-device-pci, virtio-id=26) forwards to the guest: offered with --tag, read
through our own front-end from the real daemon on a real socket."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from pagefs.impl.client.fuse_client import FuseClient
from pagefs.impl.client.host_daemon import host_daemon
from pagefs.impl.protocol.virtio_fs import TAG_SIZE, VirtioFsConfig
from pagefs.impl.transport.frontend import VhostUserFrontend
from pagefs.impl.transport.vhost_user import ProtocolFeature, bit

CONFIG_SIZE = TAG_SIZE + 8  # tag, num_request_queues, notify_buf_size


def test_tag_offers_the_config_space_and_get_config_reads_it(tmp_path: Path) -> None:
    with host_daemon(str(tmp_path), options=("--tag", "hostshare")) as host:
        with VhostUserFrontend.connect(host.socket_path, window_size=0) as fe:
            assert fe.protocol_features & bit(ProtocolFeature.CONFIG)
            whole = fe.get_config(0, CONFIG_SIZE)
            assert whole is not None
            assert VirtioFsConfig.decode(whole) == VirtioFsConfig("hostshare", 1, 0)
            # QEMU's device is told config_size=40: the tag and the queue count only
            assert fe.get_config(0, 40) == whole[:40]
            assert fe.get_config(TAG_SIZE, 4) == (1).to_bytes(4, "little")
            # beyond the space: the protocol's error answer, and the connection lives on
            assert fe.get_config(40, 8) is None
            assert fe.get_config(0, 0) is None
            with pytest.raises(OSError) as refused:
                fe.set_config(0, b"other\0")
            assert refused.value.errno == errno.EIO  # the front-end's word for a refusal
            assert fe.get_config(0, 5) == b"hosts"  # unchanged
            assert fe.alive
        with FuseClient.connect(host.socket_path, window_size=0) as guest:
            assert guest.getattr(1).attr.ino == tmp_path.stat().st_ino
        assert "dropped" not in host.log()


def test_without_a_tag_the_config_feature_is_not_offered(tmp_path: Path) -> None:
    """vhost-user-fs-pci carries its own tag= property; it negotiates exactly as before."""
    with host_daemon(str(tmp_path)) as host:
        with VhostUserFrontend.connect(host.socket_path, window_size=0) as fe:
            assert not fe.protocol_features & bit(ProtocolFeature.CONFIG)
            assert fe.get_config(0, CONFIG_SIZE) is None
            assert fe.alive
