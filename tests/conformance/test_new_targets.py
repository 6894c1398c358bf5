"""The pagefs-mount and Rust virtiofsd targets stand on the real systems under them."""

import os

import pytest

from pagefs.conformance import targets
from pagefs.conformance.target import MAPPINGS, PEERS, READ_ONLY, ROOT_NODEID
from pagefs.impl.client.mount_process import is_mounted

from .conftest import expect_read_only_refuses_create


def test_pagefs_mount_target_maps_the_hosts_pages_and_unmounts(root_only):
    with targets.factory("pagefs-mount") as factory:
        assert {MAPPINGS, PEERS, READ_ONLY} <= factory.capabilities
        views = list(factory.guestdirs) + [factory.ro_guestdir]
        assert all(is_mounted(v) for v in views)
        target = factory.start()
        try:
            guest = target.connect()
            _, fh = guest.create(ROOT_NODEID, b"a", os.O_RDWR, 0o644)
            target.host.write(b"a", 0, b"hello")
            guest.setupmapping(fh, 0, 2 << 20, True, 0)
            assert guest.load(0, 5) == b"hello"
            target.host.write(b"a", 1, b"EL")
            assert guest.load(0, 5) == b"hELlo"  # the host's own page, not a copy
        finally:
            target.close()
        expect_read_only_refuses_create(factory)
    assert not any(is_mounted(v) for v in views)


def test_rust_virtiofsd_target_serves_and_refuses_writes_read_only(root_only,
                                                                   rust_virtiofsd):
    with targets.factory("virtiofsd-rust:cache=never") as factory:
        assert MAPPINGS not in factory.capabilities
        assert "ENOSYS" in factory.why_not(MAPPINGS)
        expect_read_only_refuses_create(factory)


def test_new_targets_bad_arguments_are_one_line_errors():
    with pytest.raises(ValueError, match="usage: pagefs-mount"):
        targets.factory("pagefs-mount:fast")
    with pytest.raises(ValueError, match="not one of auto, always, never, metadata"):
        targets.factory("virtiofsd-rust:cache=none")
