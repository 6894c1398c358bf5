"""DAX in a real guest: the 6.1 guest under QEMU 11.1 (fetched by `make qemu11`, or here)
mounts pagefs-host's export `-o dax=always` through the generic vhost-user device, and a
guest process's MAP_SHARED mapping is the host's page cache both ways. Slow: TCG boots."""

from __future__ import annotations

import shutil
import tempfile

import pytest

from pagefs.conformance.vm import dax, qemu11
from pagefs.conformance.vm.image import DEFAULT_CACHE, Image, build
from pagefs.conformance.vm.stack import stack

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def test_guest_mapping_is_the_host_page_cache_under_qemu_11_1() -> None:
    try:
        Image.load()
    except Exception:
        build(DEFAULT_CACHE)
    q = qemu11.fetch()
    hostdir = tempfile.mkdtemp(prefix="pagefs-vm-dax-test.")
    try:
        with stack("pagefs-dax", hostdir, qemu=q) as vm:
            assert "dax=always" in vm.agent.check("grep pagefs /proc/mounts")
            found = dax.coherence(vm, hostdir)
        assert found.held, found.lines
    finally:
        shutil.rmtree(hostdir, ignore_errors=True)
