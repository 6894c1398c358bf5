"""The client's hot path: the requests `impl.protocol.hot` encodes are byte for byte
those of the generic codec, their replies decode to the same bodies (anything else falls
back to the generic decoder), FORGET is queued and not waited for, and the C request path
keeps its promises to callers of several threads and to callers of a back-end that dies.
The back-end is the real pagefs-host."""

from __future__ import annotations

import dataclasses
import errno
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from pagefs_waits import all_stopped, signal_tree, wait_until

from pagefs.impl import protocol as p
from pagefs.impl.client.fuse_client import FuseClient
from pagefs.impl.client.host_daemon import HostDaemonError, host_daemon
from pagefs.impl.protocol import hot
from pagefs.impl.protocol.constants import FUSE_GETATTR_FH, FUSE_ROOT_ID

IDS = (1000, 1000, 4242)


def generic(opcode: p.Opcode, nodeid: int, body: p.RequestBody) -> bytes:
    return p.encode_request(p.Request(opcode, 77, nodeid, body, *IDS))


def test_hot_requests_are_the_generic_codec_s_bytes() -> None:
    assert hot.GETATTR.encode(77, 5, IDS, FUSE_GETATTR_FH, 9) == generic(
        p.Opcode.GETATTR, 5, p.GetattrIn(FUSE_GETATTR_FH, 9))
    assert hot.FORGET.encode(77, 5, IDS, 3) == generic(p.Opcode.FORGET, 5, p.ForgetIn(3))
    assert hot.OPEN.encode(77, 5, IDS, os.O_RDWR, 0) == generic(
        p.Opcode.OPEN, 5, p.OpenIn(os.O_RDWR))
    assert hot.RELEASE.encode(77, 5, IDS, 8, os.O_RDONLY, 0, 0) == generic(
        p.Opcode.RELEASE, 5, p.ReleaseIn(8, os.O_RDONLY))
    assert hot.FLUSH.encode(77, 5, IDS, 8, 0) == generic(p.Opcode.FLUSH, 5, p.FlushIn(8))
    assert hot.SETUPMAPPING.encode(77, 5, IDS, 8, 1 << 21, 1 << 20, 3, 1 << 22) == generic(
        p.Opcode.SETUPMAPPING, 5, p.SetupmappingIn(8, 1 << 21, 1 << 20, 3, 1 << 22))
    assert hot.READ.encode(77, 5, IDS, 8, 4096, 512, 0, 0, 0) == generic(
        p.Opcode.READ, 5, p.ReadIn(8, 4096, 512))
    assert hot.encode_name(p.Opcode.LOOKUP, 77, 5, IDS, b"name") == generic(
        p.Opcode.LOOKUP, 5, p.Name(b"name"))
    assert hot.encode_write(77, 5, IDS, 8, 4096, b"data") == generic(
        p.Opcode.WRITE, 5, p.WriteIn(8, 4096, b"data"))
    assert hot.encode_name(p.Opcode.UNLINK, 77, 5, IDS, b"name") == generic(
        p.Opcode.UNLINK, 5, p.Name(b"name"))
    assert hot.encode_create(77, 5, IDS, os.O_RDWR | os.O_CREAT, 0o640, 0o22, b"new") == generic(
        p.Opcode.CREATE, 5, p.CreateIn(os.O_RDWR | os.O_CREAT, 0o640, b"new", 0o22))
    with pytest.raises(p.ProtocolError):  # judged as the codec judges it
        hot.encode_name(p.Opcode.LOOKUP, 77, 5, IDS, b"a\0b")


ATTR = p.Attr(7, 10, 1, 2, 3, 4, 5, 6, 7, 0o100644, 1, 0, 0, 0, 4096)


@pytest.mark.parametrize("opcode, body, parse", [
    (p.Opcode.GETATTR, p.AttrOut(ATTR, 1, 2), hot.parse_attr),
    (p.Opcode.LOOKUP, p.EntryOut(9, 1, ATTR, 3, 4, 5, 6), hot.parse_entry),
    (p.Opcode.CREATE, p.CreateOut(p.EntryOut(9, 1, ATTR, 3, 4, 5, 6), p.OpenOut(12, 1, -1)),
     hot.parse_create),
    (p.Opcode.OPEN, p.OpenOut(12, 1), hot.parse_open),
    (p.Opcode.WRITE, p.WriteOut(4096), hot.parse_write),
    (p.Opcode.RELEASE, p.EMPTY, hot.parse_empty),
    (p.Opcode.READ, p.Data(b"bytes read"), hot.parse_data),
])
def test_hot_replies_decode_as_the_codec_does_or_not_at_all(opcode, body, parse) -> None:
    reply = p.encode_reply(77, body)
    buffer = bytearray(reply + b"stale bytes of an earlier, longer reply")
    parsed = parse(buffer, len(reply), 77)
    assert parsed == p.decode_reply(reply, opcode).body == body
    assert type(parsed) is type(body) and repr(parsed) == repr(body)
    assert hash(parsed) == hash(body)
    assert parse(reply, len(reply), 78) is None  # another request's: the generic decoder says so
    error = p.encode_error(77, errno.ENOENT)
    assert parse(error, len(error), 77) is None
    assert parse(reply + b"x", len(reply) + 1, 77) is None


def test_hot_replies_are_frozen_as_the_codec_s_are() -> None:
    reply = p.encode_reply(77, p.EntryOut(9, 1, ATTR, 3, 4, 5, 6))
    entry = hot.parse_entry(reply, len(reply), 77)
    assert entry is not None
    with pytest.raises(dataclasses.FrozenInstanceError):
        entry.nodeid = 10  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        entry.attr.size = 0  # type: ignore[misc]
    assert dataclasses.replace(entry, entry_valid=0) == p.EntryOut(9, 1, ATTR, 0, 4, 5, 6)


@pytest.mark.parametrize("nsec_field", ["atimensec", "mtimensec", "ctimensec"])
def test_a_bad_field_in_a_hot_reply_is_left_to_the_codec_which_refuses_it(nsec_field) -> None:
    attr = dataclasses.replace(ATTR, **{nsec_field: 10**9})
    for opcode, reply, parse in [
        (p.Opcode.GETATTR, p.encode_reply(77, p.AttrOut(attr)), hot.parse_attr),
        (p.Opcode.GETATTR, p.encode_reply(77, p.AttrOut(ATTR, 0, 10**9)), hot.parse_attr),
        (p.Opcode.LOOKUP, p.encode_reply(77, p.EntryOut(9, 1, attr)), hot.parse_entry),
        (p.Opcode.LOOKUP, p.encode_reply(77, p.EntryOut(9, 1, ATTR, 0, 0, 10**9)),
         hot.parse_entry),
        (p.Opcode.LOOKUP, p.encode_reply(77, p.EntryOut(9, 1, ATTR, 0, 0, 0, 10**9)),
         hot.parse_entry),
    ]:
        assert parse(reply, len(reply), 77) is None
        with pytest.raises(p.ProtocolError):
            p.decode_reply(reply, opcode)


@pytest.fixture
def host(tmp_path: Path):
    (tmp_path / "file").write_bytes(b"0123456789")
    with host_daemon(str(tmp_path)) as daemon:
        yield daemon


def test_forget_is_not_waited_for_and_settle_waits_until_it_is_taken(host) -> None:
    with FuseClient.connect(host.socket_path, window_size=0) as client:
        nodeid = client.lookup(FUSE_ROOT_ID, b"file").nodeid
        signal_tree(host.pid, signal.SIGSTOP)
        wait_until(lambda: all_stopped(host.pid), "pagefs-host to stop")
        try:
            client.forget(nodeid, 1)  # returns though nobody on the other side is running
            with pytest.raises(OSError) as err:
                client.settle(timeout=0.2)
            assert err.value.errno == errno.ETIMEDOUT
        finally:
            signal_tree(host.pid, signal.SIGCONT)
        client.settle()
        with pytest.raises(OSError) as gone:
            client.getattr(nodeid)
        assert gone.value.errno == errno.ESTALE


def test_callers_in_several_threads_each_get_their_own_replies(host, tmp_path: Path) -> None:
    with FuseClient.connect(host.socket_path, window_size=0) as client:
        names = [f"t{t}".encode() for t in range(4)]
        for name in names:
            (tmp_path / name.decode()).write_bytes(name * 100)
        failures: list[BaseException] = []

        def work(name: bytes) -> None:
            try:
                for _ in range(150):
                    entry = client.lookup(FUSE_ROOT_ID, name)
                    assert client.getattr(entry.nodeid).attr.size == len(name) * 100
                    fh = client.open(entry.nodeid, os.O_RDONLY).fh
                    assert client.read(entry.nodeid, fh, 0, 4) == name * 2
                    client.release(entry.nodeid, fh)
                    client.forget(entry.nodeid, 1)
            except BaseException as e:  # noqa: BLE001 - reported by the main thread
                failures.append(e)

        threads = [threading.Thread(target=work, args=(name,)) for name in names]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert not failures and not any(t.is_alive() for t in threads)
        stats = client.frontend.poll_stats(1)
        assert stats["spun"] + stats["slept"] <= stats["waits"]  # each counted wait, once


def test_a_back_end_that_dies_mid_request_gives_connection_error_not_a_hang(
        tmp_path: Path) -> None:
    # the daemon's end is reported when its context ends: killed, as this test means it to be
    with pytest.raises(HostDaemonError), host_daemon(str(tmp_path)) as host, \
            FuseClient.connect(host.socket_path, window_size=0) as client:
        client.getattr(FUSE_ROOT_ID)
        signal_tree(host.pid, signal.SIGSTOP)
        wait_until(lambda: all_stopped(host.pid), "pagefs-host to stop")
        outcome: list[BaseException | None] = []

        def blocked() -> None:
            try:
                client.getattr(FUSE_ROOT_ID)
                outcome.append(None)
            except BaseException as e:  # noqa: BLE001 - judged by the main thread
                outcome.append(e)

        waiter = threading.Thread(target=blocked)
        waiter.start()
        signal_tree(host.pid, signal.SIGKILL)  # the daemon and the guest's worker
        waiter.join(30)
        assert not waiter.is_alive(), "a caller hung on a dead back-end"
        assert isinstance(outcome[0], ConnectionError)
        with pytest.raises(ConnectionError):
            client.getattr(FUSE_ROOT_ID)


BURSTS = """
import sys, tempfile
from pagefs.impl import protocol as p
from pagefs.impl.client.fuse_client import FuseClient
from pagefs.impl.client.host_daemon import host_daemon
with tempfile.TemporaryDirectory() as shared, host_daemon(shared) as host:
    with FuseClient.connect(host.socket_path) as client:
        for _ in range(1000):
            futures = [client.submit(p.Opcode.GETATTR, 1, p.GetattrIn()) for _ in range(64)]
            for future in futures:
                future.result(30)
            for _ in range(20):
                client.getattr(1)
print("held")
"""


def test_bursts_of_futures_between_calls_keep_the_front_end_s_heap_whole() -> None:
    """Futures a waiter claims after they were queued for the background thread used to
    leave stale tokens in the ready list; once their heads were reused the list outgrew
    its array and glibc aborted the process ("double free or corruption"). A process of
    its own, so that an abort fails this test instead of ending the run."""
    done = subprocess.run([sys.executable, "-c", BURSTS], capture_output=True, text=True,
                          timeout=240)
    assert (done.returncode, done.stdout.strip()) == (0, "held"), done.stderr[-2000:]


def test_a_parse_that_calls_again_gets_a_buffer_of_its_own(host) -> None:
    """The request path parses a reply in this thread's buffer: a call made by the parse
    itself (or one needing a larger buffer) must not overwrite the reply being parsed."""
    with FuseClient.connect(host.socket_path, window_size=0) as client:
        path = client.frontend.request_path
        file = client.lookup(FUSE_ROOT_ID, b"file").nodeid

        def getattr_bytes(nodeid: int, unique: int) -> bytes:
            request = hot.GETATTR.encode(unique, nodeid, IDS, 0, 0)
            return path.call(1, request, 4096 + 16, None, None, 10)

        def nested(buffer: bytearray, length: int, unique: int) -> tuple[p.AttrOut, bytes]:
            inner = getattr_bytes(file, unique + 1)  # while the outer reply is in `buffer`
            big = path.call(1, hot.GETATTR.encode(unique + 2, file, IDS, 0, 0), 1 << 16,
                            None, None, 10)  # one larger than any buffer so far
            outer = hot.parse_attr(buffer, length, unique)
            assert outer is not None and big == inner[:8] + struct_unique(unique + 2) + inner[16:]
            return outer, inner

        request = hot.GETATTR.encode(900, FUSE_ROOT_ID, IDS, 0, 0)
        outer, inner = path.call(1, request, 4096 + 16, nested, 900, 10)
        assert outer == client.getattr(FUSE_ROOT_ID)
        assert p.decode_reply(inner, p.Opcode.GETATTR).body == client.getattr(file)
        assert outer != client.getattr(file)  # the two replies differ, so neither was lost


def struct_unique(unique: int) -> bytes:
    return unique.to_bytes(8, "little")


@pytest.mark.parametrize("spin_ns", [0, 50_000])
def test_mappings_made_back_to_back_from_several_threads_are_each_made_once(
        host, tmp_path: Path, spin_ns: int) -> None:
    """Waiters answer their SHMEM_MAP/_UNMAPs while the backend-channel thread parks
    (shmem_window.h): spinning, or (spin_ns 0) asleep on the channel's socket as well."""
    mib = 1 << 20
    (tmp_path / "big").write_bytes(bytes(8 * mib))
    with FuseClient.connect(host.socket_path, spin_ns=spin_ns) as client:
        nodeid = client.lookup(FUSE_ROOT_ID, b"big").nodeid
        fh = client.open(nodeid, os.O_RDONLY).fh
        failures: list[BaseException] = []

        def work(slot: int) -> None:
            try:
                for _ in range(40):
                    client.setupmapping(nodeid, fh, slot * mib, mib, False, slot * mib)
                    client.removemapping([(slot * mib, mib)])
                client.setupmapping(nodeid, fh, slot * mib, mib, False, slot * mib)
            except BaseException as e:  # noqa: BLE001 - reported by the main thread
                failures.append(e)

        threads = [threading.Thread(target=work, args=(slot,)) for slot in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert not failures and not any(t.is_alive() for t in threads)
        window = client.frontend.window
        assert window is not None
        assert [(m.moffset, m.length) for m in window.mappings()] == [
            (slot * mib, mib) for slot in range(3)]
