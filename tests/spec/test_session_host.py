"""INIT and DESTROY (RECLAIM), and the host's own operations."""

from pagefs.spec import Errno, initial_state
from pagefs.spec.datatypes import FileKind, InitInfo
from pagefs.spec.explore import SMALL


def test_requests_before_init_fail_and_init_announces_the_alignment(spec) -> None:
    s = spec()
    s.state = initial_state(SMALL, connected=False)
    assert s.err("LOOKUP", 0, 1, b"a") == {Errno.EIO}
    assert s.err("READ", 0, 1, 0, 1) == {Errno.EIO}
    assert s.ok("INIT", 0) == InitInfo(map_alignment=4)  # 16-byte pages
    assert s.err("LOOKUP", 0, 1, b"a") == {Errno.ENOENT}
    assert s.err("LOOKUP", 1, 1, b"a") == {Errno.EIO}  # guest 1 has not sent INIT


def test_init_on_a_live_session_releases_the_old_one(spec) -> None:
    """A guest reset without unmount: the new INIT ends the old session as DESTROY does."""
    s = spec()
    s.file(b"f", bytes(20))
    s.mapped(0, b"f")
    other = s.state.guests[1]
    held = s.state.guests[0]
    assert s.ok("INIT", 0) == InitInfo(map_alignment=4)
    fresh = s.state.guests[0]
    assert fresh.connected and not fresh.handles and set(fresh.nodes) == {1}
    assert fresh.window == (None,) * 3 and s.state.guests[1] == other
    assert (fresh.next_nodeid, fresh.next_fh) == (held.next_nodeid, held.next_fh)


def test_destroy_releases_everything_the_guest_held(spec) -> None:
    s = spec()
    s.file(b"f", bytes(20))
    s.mapped(0, b"f")
    s.mapped(1, b"f", moffset=32)
    other = s.state.guests[1]
    s.ok("host.unlink", b"f")
    s.ok("DESTROY", 0)
    gone = s.state.guests[0]
    assert not gone.handles and set(gone.nodes) == {1} and gone.window == (None,) * 3
    assert s.state.guests[1] == other  # RECLAIM: the other guest is unaffected
    assert s.ok("LOAD", 1, 32, 2) == bytes(2)
    s.ok("DESTROY", 1)
    assert set(s.state.inodes) == {1}  # the unlinked file went with its last holder
    s.ok("INIT", 0)
    assert s.err("LOOKUP", 0, 1, b"f") == {Errno.ENOENT}
    s.file(b"g")
    assert s.lookup(0, b"g") == 3  # numbering goes on across sessions: never reused


def test_host_operations_and_their_errors(spec) -> None:
    s = spec()
    assert s.ok("host.mkdir", b"d", 0o755) is None
    assert s.err("host.mkdir", b"d", 0o755) == {Errno.EEXIST}
    assert s.err("host.create", b"x/y", 0o644) == {Errno.ENOENT}
    s.file(b"d/f", b"abc")
    assert s.err("host.create", b"d/f/g", 0o644) == {Errno.ENOTDIR}
    assert s.err("host.write", b"d", 0, b"x") == {Errno.EISDIR}
    assert s.err("host.read", b"d/f", -1, 1) == {Errno.EINVAL}
    assert s.err("host.truncate", b"d/f", -1) == {Errno.EINVAL}
    assert s.err("host.stat", b"d/../f") == {Errno.EINVAL}  # no '..' on the host either
    s.ok("host.symlink", b"/outside", b"l")
    assert s.err("host.write", b"l", 0, b"x") == {Errno.ELOOP}  # never followed
    assert s.err("host.create", b"l/x", 0o644) == {Errno.ENOTDIR}
    assert s.ok("host.stat", b"l").kind is FileKind.LNK
    assert s.err("host.rmdir", b"d") == {Errno.ENOTEMPTY, Errno.EEXIST}
    assert s.err("host.unlink", b"d") == {Errno.EISDIR, Errno.EPERM}
    s.ok("host.rename", b"d/f", b"g")
    assert s.ok("host.read", b"g", 1, 5) == b"bc"
    s.ok("host.rmdir", b"d")
    s.ok("host.chmod", b"g", 0o4755)
    assert s.ok("host.stat", b"g").mode == 0o4755
    assert s.err("host.rename", b"g", b"g/x") == {Errno.ENOTDIR}
    assert s.ok("host.stat", b"").kind is FileKind.DIR
