"""Random request sequences against one guest session on a real export, with the host
changing the tree in between: nodeids and handles are never reused (NODEID, HANDLE), a
nodeid always names the inode it was issued for, and the session holds exactly one host
descriptor per nodeid and handle, all of them given back at close (RECLAIM)."""

from __future__ import annotations

import errno
import os
import shutil
import tempfile

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from pagefs.impl.host.passthrough import PassthroughFS
from pagefs.impl.protocol.constants import FUSE_ROOT_ID as ROOT_ID

from .conftest import open_fds

NAMES = st.sampled_from([b"a", b"b", b"c"])


class SessionMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.root = tempfile.mkdtemp(prefix="pagefs-stateful-")
        self.baseline = len(open_fds())
        self.fs = PassthroughFS(self.root)
        self.guest = self.fs.session()
        self.issued_nodeids: set[int] = {ROOT_ID}
        self.issued_handles: set[int] = set()
        self.inode_of: dict[int, int] = {ROOT_ID: os.stat(self.root).st_ino}
        self.lookups: dict[int, int] = {}
        self.handles: set[int] = set()

    def host(self, name: bytes) -> str:
        return os.path.join(self.root, name.decode())

    @rule(name=NAMES, data=st.binary(max_size=8))
    def host_creates(self, name: bytes, data: bytes) -> None:
        with open(self.host(name), "wb") as f:
            f.write(data)

    @rule(name=NAMES)
    def host_unlinks(self, name: bytes) -> None:
        if os.path.isfile(self.host(name)):
            os.unlink(self.host(name))

    @rule(src=NAMES, dst=NAMES)
    def host_renames(self, src: bytes, dst: bytes) -> None:
        if os.path.isfile(self.host(src)):
            os.rename(self.host(src), self.host(dst))

    @rule(name=NAMES)
    def lookup(self, name: bytes) -> None:
        try:
            entry = self.guest.lookup(ROOT_ID, name)
        except FileNotFoundError:
            assert not os.path.lexists(self.host(name))
            return
        if entry.nodeid in self.inode_of:
            assert self.inode_of[entry.nodeid] == entry.attr.st_ino  # NODEID
        else:
            assert entry.nodeid not in self.issued_nodeids  # never reissued
            self.issued_nodeids.add(entry.nodeid)
            self.inode_of[entry.nodeid] = entry.attr.st_ino
        self.lookups[entry.nodeid] = self.lookups.get(entry.nodeid, 0) + 1

    @precondition(lambda self: self.lookups)
    @rule(data=st.data())
    def forget(self, data: st.DataObject) -> None:
        nodeid = data.draw(st.sampled_from(sorted(self.lookups)))
        count = data.draw(st.integers(1, self.lookups[nodeid]))
        self.guest.forget(nodeid, count)
        self.lookups[nodeid] -= count
        if not self.lookups[nodeid]:
            del self.lookups[nodeid], self.inode_of[nodeid]

    @precondition(lambda self: self.lookups)
    @rule(data=st.data(), flags=st.sampled_from([os.O_RDONLY, os.O_RDWR]))
    def open(self, data: st.DataObject, flags: int) -> None:
        fh = self.guest.open(data.draw(st.sampled_from(sorted(self.lookups))), flags)
        assert fh not in self.issued_handles  # HANDLE: never reused
        self.issued_handles.add(fh)
        self.handles.add(fh)

    @rule()
    def opendir(self) -> None:
        fh = self.guest.opendir(ROOT_ID)
        assert fh not in self.issued_handles
        self.issued_handles.add(fh)
        self.handles.add(fh)

    @precondition(lambda self: self.handles)
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        fh = data.draw(st.sampled_from(sorted(self.handles)))
        try:
            self.guest.release(fh)
        except OSError as err:  # a directory handle is released by RELEASEDIR only
            assert err.errno == errno.EBADF
            self.guest.releasedir(fh)
        self.handles.discard(fh)
        try:
            self.guest.release(fh)
        except OSError as err:
            assert err.errno == errno.EBADF  # a second RELEASE fails
        else:
            raise AssertionError("a released handle was released again")

    @invariant()
    def nodeids_name_their_inodes(self) -> None:
        for nodeid, ino in self.inode_of.items():
            assert self.guest.getattr(nodeid).st_ino == ino

    @invariant()
    def one_descriptor_per_nodeid_and_handle(self) -> None:
        held = self.guest.stats()
        assert held["nodes"] == len(self.inode_of) and held["handles"] == len(self.handles)
        assert len(open_fds()) == self.baseline + 1 + held["nodes"] + held["handles"]

    def teardown(self) -> None:
        self.guest.close()
        self.fs.close()
        shutil.rmtree(self.root)
        assert len(open_fds()) == self.baseline  # RECLAIM


SessionMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=30,
                                            deadline=None)
test_session_bookkeeping = SessionMachine.TestCase
