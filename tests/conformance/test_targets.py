"""The shipped targets behave as the real systems under them do."""

import errno
import os
import signal
import subprocess
import sys

import pytest

from pagefs.conformance import targets
from pagefs.conformance.session import Session
from pagefs.conformance.target import MAPPINGS, PEERS, READ_ONLY, ROOT_NODEID
from pagefs.conformance.targets import local as local_target
from pagefs.spec import Config
from pagefs.spec.datatypes import O_CREAT, O_RDWR

from .conftest import expect_read_only_refuses_create


def _mapped_file(target):
    guest = target.connect()
    entry, fh = guest.create(ROOT_NODEID, b"a", os.O_RDWR, 0o644)
    target.host.write(b"a", 0, b"hello")
    guest.setupmapping(fh, 0, 2 << 20, True, 0)
    return guest, fh


def test_local_guest_sees_host_writes_through_its_mapping_at_once():
    with targets.factory("local") as factory:
        target = factory.start()
        try:
            guest, fh = _mapped_file(target)
            assert guest.load(0, 5) == b"hello"
            target.host.write(b"a", 1, b"EL")
            assert guest.load(0, 5) == b"hELlo"
            guest.store(0, b"J")
            assert target.host.read(b"a", 0, 5) == b"JELlo"
            with pytest.raises(OSError) as beyond:
                guest.load(4096, 1)  # a page wholly beyond end of file
            assert beyond.value.errno == errno.EFAULT
            assert guest.read(fh, 0, 5) == b"JELlo"  # the guest goes on after the fault
        finally:
            target.close()


def test_local_handles_are_never_reused_and_released_ones_fail():
    with targets.factory("local") as factory:
        target = factory.start()
        try:
            guest = target.connect()
            _, first = guest.create(ROOT_NODEID, b"a", os.O_RDWR, 0o644)
            guest.release(first)
            with pytest.raises(OSError) as again:
                guest.release(first)
            assert again.value.errno == errno.EBADF
            entry = guest.lookup(ROOT_NODEID, b"a")
            assert guest.open(entry.nodeid, os.O_RDONLY) != first
        finally:
            target.close()


def test_bindfs_mounts_two_views_and_a_read_only_one_and_unmounts_them(root_only,
                                                                       no_leftover_mounts):
    with targets.factory("bindfs") as factory:
        assert {MAPPINGS, PEERS, READ_ONLY} <= factory.capabilities
        expect_read_only_refuses_create(factory)


def test_unknown_target_and_bad_mount_arguments_are_one_line_errors():
    with pytest.raises(ValueError, match="unknown target"):
        targets.factory("nfs")
    with pytest.raises(ValueError, match="usage: mount:HOSTDIR:GUESTDIR"):
        targets.factory("mount:/tmp")
    with pytest.raises(OSError, match="is not a directory"):
        targets.factory("mount:/nonexistent:/tmp")


def test_a_dead_back_end_s_last_words_are_on_the_step_that_met_its_death(root_only):
    # QEMU 7.2's virtiofsd aborts (glibc's fortified openat) on a CREATE with O_CREAT of a
    # name that exists: the guest sees only ENOTCONN, the trace must say why.
    with targets.factory("virtiofsd:cache=none") as factory:
        session = Session(factory, Config())
        try:
            create = ("CREATE", (0, ROOT_NODEID, b"a", O_RDWR | O_CREAT, 0o644))
            assert session.step(*create).ok
            died = session.step(*create)
        finally:
            session.close()
    assert not died.ok and str(died.observed) == "Err(ENOTCONN)"
    assert "[back-end died (exit status -6): " in died.line()
    assert "invalid openat64 call: O_CREAT or O_TMPFILE without mode" in died.line()



def test_a_killed_pagefs_daemon_is_shown_on_the_step_and_the_case_still_closes():
    with targets.factory("pagefs") as factory:
        session = Session(factory, Config())
        try:
            assert session.step("CREATE", (0, ROOT_NODEID, b"a", O_RDWR, 0o644)).ok
            daemon = session.target._served.process  # the harness's own handle on it
            daemon.kill()
            daemon.wait()  # dead: its guest's worker got its parent-death signal as it died
            died = session.step("READ", (0, 1, 0, 4))
        finally:
            session.close()  # the death was shown: closing must not raise it again
    assert not died.ok
    assert f"[back-end died (exit status {-signal.SIGKILL}): " in died.line()
    assert daemon.returncode == -signal.SIGKILL


def _factory_in_child() -> tuple[subprocess.Popen, str]:
    """A process holding a local factory open, and the factory's directory."""
    child = subprocess.Popen(
        [sys.executable, "-c",
         "from pagefs.conformance import targets\n"
         "import sys, time\n"
         "with targets.factory('local') as f:\n"
         "    print(f._base, flush=True)\n"
         "    time.sleep(600)\n"],
        stdout=subprocess.PIPE, text=True)
    return child, child.stdout.readline().strip()


def test_a_killed_local_factory_leaves_its_bind_mount_to_the_next_one():
    """SIGKILL runs no cleanup: the next factory unmounts and removes what it left, and
    leaves a live factory's directory alone."""
    killed, killed_base = _factory_in_child()
    alive, alive_base = _factory_in_child()
    try:
        killed.kill()
        killed.wait()
        ro = os.path.join(killed_base, "ro")
        assert local_target._is_mount_point(ro) == (os.geteuid() == 0)
        with targets.factory("local"):
            assert not os.path.exists(killed_base)
            assert not local_target._is_mount_point(ro)
            assert os.path.isdir(alive_base)
    finally:
        for child in (killed, alive):
            child.kill()
            child.wait()
            child.stdout.close()
        local_target.sweep_abandoned()
    assert not os.path.exists(alive_base)
