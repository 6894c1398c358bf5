"""DAX in a real guest: the 6.1 guest under QEMU 11.1 (fetched by `make qemu11`, or here)
mounts pagefs-host's export `-o dax=always` through the generic vhost-user device, and a
guest process's MAP_SHARED mapping is the host's page cache both ways. Slow: TCG boots."""

from __future__ import annotations

import shutil
import tempfile

import pytest

from pagefs.conformance.vm import dax, qemu11
from pagefs.conformance.vm.exercise import exercise
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


def test_exerciser_with_mmap_holds_on_the_dax_mount_in_whole_2m_sizes() -> None:
    """With every size a whole number of the guest's 2 MiB ranges (what QEMU 11.1 can map),
    reads, writes, mmap loads and stores, truncates and fallocate hold on the DAX mount;
    the guest's read-to-write upgrades of a mapped range among them (pagefs-host takes the
    read mapping out of QEMU's window first: QEMU refuses a mapping over a live one)."""
    q = qemu11.fetch()
    hostdir = tempfile.mkdtemp(prefix="pagefs-vm-dax-test.")
    try:
        with stack("pagefs-dax", hostdir, qemu=q) as vm:
            outcome = exercise(vm, "/mnt/pagefs/fsx", ops=2000, seed=5, mmap=True,
                               max_size=8 << 20, max_op_len=1 << 20, align=2 << 20)
            qemu_said = vm.qemu_log()
        assert outcome.held, outcome.output
        assert "mapping overlap" not in qemu_said
    finally:
        shutil.rmtree(hostdir, ignore_errors=True)
