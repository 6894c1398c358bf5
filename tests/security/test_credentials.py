"""CREDENTIALS on the real daemon: each request acts on the host as the user its header
names, so the host kernel checks permissions, owns new files by that user and clears
set-uid/set-gid where it would (issue 11, defect 2)."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from pagefs.impl.client.fuse_client import INIT_FLAGS, FuseClient
from pagefs.impl.client.host_daemon import host_daemon
from pagefs.impl.protocol import InitFlag, Opcode, WriteIn
from pagefs.impl.protocol.constants import FUSE_WRITE_KILL_SUIDGID

from .conftest import expect_errno

USER, GROUP, OTHER_GROUP = 1000, 1000, 2000


@pytest.fixture
def export(tmp_path: Path) -> Path:
    if os.geteuid() != 0:
        pytest.fail("needs root: per-request credentials are a root daemon's")
    root = tmp_path / "export"
    root.mkdir()
    root.chmod(0o777)  # anyone may create here; what they create is theirs
    (root / "rootfile").write_bytes(b"root's")
    (root / "rootfile").chmod(0o644)
    (root / "closed").mkdir(mode=0o755)
    shared = root / "setgid-dir"
    shared.mkdir()
    os.chown(shared, 0, OTHER_GROUP)
    shared.chmod(0o2777)
    (root / "suid-open").write_bytes(b"anyone writes")
    (root / "suid-open").chmod(0o6777)
    return root


@pytest.fixture
def guest(export: Path) -> Iterator[FuseClient]:
    with host_daemon(str(export)) as host, \
            FuseClient.connect(host.socket_path, window_size=0) as client:
        yield client


def owner(path: Path) -> tuple[int, int, int]:
    st = path.lstat()
    return st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)


def test_a_set_id_create_by_a_user_is_that_users_not_roots(guest: FuseClient,
                                                           export: Path) -> None:
    with guest.acting_as(USER, GROUP):
        guest.create(1, b"mine", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o6755)
        guest.mkdir(1, b"mydir", 0o755)
    uid, gid, mode = owner(export / "mine")
    assert (uid, gid) == (USER, GROUP)  # a set-id file of its own user: no escalation
    assert owner(export / "mydir")[:2] == (USER, GROUP)
    assert mode & 0o777 == 0o755


def test_a_user_cannot_make_roots_file_set_uid(guest: FuseClient, export: Path) -> None:
    with guest.acting_as(USER, GROUP):
        nodeid = guest.lookup(1, b"rootfile").nodeid
        expect_errno(errno.EPERM, guest.setattr, nodeid, mode=0o104755)
        expect_errno(errno.EACCES, guest.open, nodeid, os.O_WRONLY)
    assert owner(export / "rootfile") == (0, 0, 0o644)


def test_a_user_cannot_create_where_the_host_forbids_it(guest: FuseClient,
                                                        export: Path) -> None:
    with guest.acting_as(USER, GROUP):
        closed = guest.lookup(1, b"closed").nodeid
        expect_errno(errno.EACCES, guest.create, closed, b"x", os.O_WRONLY | os.O_CREAT, 0o644)
        expect_errno(errno.EACCES, guest.mkdir, closed, b"d", 0o755)
    assert os.listdir(export / "closed") == []


def test_set_gid_is_cleared_for_a_creator_outside_the_group(guest: FuseClient,
                                                            export: Path) -> None:
    with guest.acting_as(USER, GROUP):
        shared = guest.lookup(1, b"setgid-dir").nodeid
        guest.create(shared, b"file", os.O_WRONLY | os.O_CREAT, 0o2755)
        guest.mkdir(shared, b"sub", 0o755)
    uid, gid, mode = owner(export / "setgid-dir" / "file")
    assert (uid, gid) == (USER, OTHER_GROUP)  # the directory's group, inherited
    assert not mode & stat.S_ISGID  # but not set-gid: the creator is not in that group
    assert owner(export / "setgid-dir" / "sub")[2] & stat.S_ISGID  # directories inherit it


def test_a_write_by_a_user_clears_set_uid_and_set_gid(guest: FuseClient,
                                                      export: Path) -> None:
    with guest.acting_as(USER, GROUP):
        nodeid = guest.lookup(1, b"suid-open").nodeid
        fh = guest.open(nodeid, os.O_WRONLY).fh
        guest.write(nodeid, fh, 0, b"changed")
    assert owner(export / "suid-open")[2] == 0o0777


def test_killpriv_v2_clears_set_id_even_for_guest_root(export: Path) -> None:
    with host_daemon(str(export)) as host, \
            FuseClient.connect(host.socket_path, window_size=0) as guest:
        guest.init(INIT_FLAGS | InitFlag.HANDLE_KILLPRIV_V2)
        nodeid = guest.lookup(1, b"suid-open").nodeid
        fh = guest.open(nodeid, os.O_WRONLY).fh
        guest.write(nodeid, fh, 0, b"root writes")  # root keeps CAP_FSETID: kept
        assert owner(export / "suid-open")[2] == 0o6777
        guest.call(Opcode.WRITE, nodeid, WriteIn(fh, 0, b"kill", FUSE_WRITE_KILL_SUIDGID))
    assert owner(export / "suid-open")[2] == 0o0777


def test_the_requests_umask_is_honoured(guest: FuseClient, export: Path) -> None:
    from pagefs.impl.protocol import CreateIn, MkdirIn
    guest.call(Opcode.CREATE, 1, CreateIn(os.O_WRONLY | os.O_CREAT, 0o666, b"masked", 0o027))
    guest.call(Opcode.MKDIR, 1, MkdirIn(0o777, b"maskdir", 0o022))
    assert owner(export / "masked")[2] == 0o640
    assert owner(export / "maskdir")[2] == 0o755


def test_uid_minus_one_names_no_user(guest: FuseClient, export: Path) -> None:
    """(uid_t)-1 would leave the thread's fsuid as root: refused."""
    with guest.acting_as(0xFFFF_FFFF, 0xFFFF_FFFF):
        expect_errno(errno.EINVAL, guest.create, 1, b"x", os.O_WRONLY | os.O_CREAT, 0o644)
    assert not (export / "x").exists()


def test_a_single_user_export_squashes_every_guest_user(export: Path) -> None:
    with host_daemon(str(export), options=("--squash-uid", "4321", "--squash-gid", "4321")
                     ) as host, FuseClient.connect(host.socket_path, window_size=0) as guest:
        guest.create(1, b"by-root", os.O_WRONLY | os.O_CREAT, 0o644)
        with guest.acting_as(USER, GROUP):
            guest.create(1, b"by-user", os.O_WRONLY | os.O_CREAT, 0o644)
            expect_errno(errno.EACCES, guest.open, guest.lookup(1, b"rootfile").nodeid,
                         os.O_WRONLY)
        assert "requests act as uid 4321 gid 4321" in host.log()
    assert owner(export / "by-root")[:2] == (4321, 4321)
    assert owner(export / "by-user")[:2] == (4321, 4321)
