"""Every FUSE opcode pagefs speaks means the same thing in every layer that names it.

`SPOKEN` lists, once, each opcode pagefs serves: the spec operation that models it, the
FuseClient method that sends it, the conformance Guest method that drives it (or why a
layer has none). `UNSUPPORTED` lists every other opcode of fuse.h with the errno the host
answers it with. The tests read each layer's own record -- the spec registry, the codec's
layouts, the dispatcher's routes, the client's code, the Guest interface -- and fail on
any opcode that one layer speaks and the table does not say, or says differently.

To add an opcode: one `Spoken` row (and its route, layout, client method, ...); the tests
say which layer is missing it.
"""

from __future__ import annotations

import ast
import errno
import inspect
import struct
from dataclasses import dataclass
from pathlib import Path

import pytest

from pagefs.conformance.target import Guest
from pagefs.impl import protocol as p
from pagefs.impl.client import fuse_client
from pagefs.impl.host.dispatch import Dispatcher
from pagefs.impl.host.passthrough import PassthroughFS
from pagefs.impl.protocol.codec import IN_HEADER
from pagefs.impl.transport.shmem_window import ShmemWindow
from pagefs.spec import REGISTRY

Op = p.Opcode


@dataclass(frozen=True)
class Spoken:
    """One opcode pagefs serves, and who names it."""

    opcode: Op
    spec: str | None  # the spec operation that models it (None: see `why`)
    client: str | None  # the FuseClient method that sends it (None: see `why`)
    guest: str | None  # the conformance Guest method that drives it (None: see `why`)
    why: str = ""
    same_as: Op | None = None  # the spec models it as this opcode's operation (RENAME2)


SPOKEN: tuple[Spoken, ...] = (
    Spoken(Op.INIT, "INIT", "init", None, "a target's connect() sends INIT"),
    Spoken(Op.DESTROY, "DESTROY", "destroy", "close", "a guest's close ends its session"),
    Spoken(Op.LOOKUP, "LOOKUP", "lookup", "lookup"),
    Spoken(Op.FORGET, "FORGET", "forget", "forget"),
    Spoken(Op.BATCH_FORGET, "FORGET", "batch_forget", None,
           "several FORGETs in one message; the spec and the Guest forget one at a time",
           same_as=Op.FORGET),
    Spoken(Op.INTERRUPT, None, None, None,
           "accepted and ignored: requests are served to the end, so there is nothing to "
           "interrupt; no layer above the host sends it"),
    Spoken(Op.GETATTR, "GETATTR", "getattr", "getattr"),
    Spoken(Op.SETATTR, "SETATTR", "setattr", "setattr"),
    Spoken(Op.READLINK, "READLINK", "readlink", "readlink"),
    Spoken(Op.SYMLINK, "SYMLINK", "symlink", "symlink"),
    Spoken(Op.MKDIR, "MKDIR", "mkdir", "mkdir"),
    Spoken(Op.UNLINK, "UNLINK", "unlink", "unlink"),
    Spoken(Op.RMDIR, "RMDIR", "rmdir", "rmdir"),
    Spoken(Op.RENAME, "RENAME", "rename", "rename"),
    Spoken(Op.RENAME2, "RENAME", "rename", "rename",
           "RENAME with flags (RENAME_NOREPLACE, RENAME_EXCHANGE)", same_as=Op.RENAME),
    Spoken(Op.OPEN, "OPEN", "open", "open"),
    Spoken(Op.CREATE, "CREATE", "create", "create"),
    Spoken(Op.READ, "READ", "read", "read"),
    Spoken(Op.WRITE, "WRITE", "write", "write"),
    Spoken(Op.STATFS, "STATFS", "statfs", "statfs"),
    Spoken(Op.FLUSH, "FLUSH", "flush", "flush"),
    Spoken(Op.FSYNC, "FSYNC", "fsync", "fsync"),
    Spoken(Op.RELEASE, "RELEASE", "release", "release"),
    Spoken(Op.OPENDIR, "OPENDIR", "opendir", "opendir"),
    Spoken(Op.READDIR, "READDIR", "readdir", "readdir"),
    Spoken(Op.RELEASEDIR, "RELEASEDIR", "releasedir", "releasedir"),
    Spoken(Op.SETUPMAPPING, "SETUPMAPPING", "setupmapping", "setupmapping"),
    Spoken(Op.REMOVEMAPPING, "REMOVEMAPPING", "removemapping", "removemapping"),
    # Guest: the optional methods of capability SPECIAL
    Spoken(Op.LINK, "LINK", "link", "link"),
    Spoken(Op.MKNOD, "MKNOD", "mknod", "mknod"),
    Spoken(Op.SETXATTR, "SETXATTR", "setxattr", "setxattr"),
    Spoken(Op.GETXATTR, "GETXATTR", "getxattr", "getxattr"),
    Spoken(Op.LISTXATTR, "LISTXATTR", "listxattr", "listxattr"),
    Spoken(Op.REMOVEXATTR, "REMOVEXATTR", "removexattr", "removexattr"),
    Spoken(Op.FALLOCATE, "FALLOCATE", "fallocate", "fallocate"),
    Spoken(Op.SYNCFS, "SYNCFS", "syncfs", "syncfs"),
)

# Every other opcode of fuse.h, and what the host answers it with (after INIT).
UNSUPPORTED: dict[Op, int] = {
    Op.FSYNCDIR: errno.ENOSYS,  # directory contents are the host's: fsync of a dir is moot
    Op.GETLK: errno.ENOSYS,  # no locks (the guest kernel keeps local ones)
    Op.SETLK: errno.ENOSYS,
    Op.SETLKW: errno.ENOSYS,
    Op.ACCESS: errno.ENOSYS,  # permissions are not re-checked per guest user
    Op.BMAP: errno.ENOSYS,  # block maps are for fuseblk
    Op.IOCTL: errno.ENOSYS,
    Op.POLL: errno.ENOSYS,
    Op.NOTIFY_REPLY: errno.ENOSYS,  # no notifications are sent
    Op.READDIRPLUS: errno.ENOSYS,  # never offered (INIT grants no READDIRPLUS)
    Op.LSEEK: errno.ENOSYS,
    Op.COPY_FILE_RANGE: errno.ENOSYS,
    Op.TMPFILE: errno.ENOSYS,
    Op.STATX: errno.ENOSYS,
}

# A request body for each unsupported opcode the codec can still decode.
DECODABLE: dict[Op, p.RequestBody] = {Op.FSYNCDIR: p.FsyncIn(1, 0)}

BY_OPCODE = {row.opcode: row for row in SPOKEN}


def test_every_opcode_is_listed_once() -> None:
    assert len(BY_OPCODE) == len(SPOKEN), "an opcode is listed twice"
    assert not BY_OPCODE.keys() & UNSUPPORTED.keys()
    assert BY_OPCODE.keys() | UNSUPPORTED.keys() == set(Op)
    assert {op for op in UNSUPPORTED if op in p.LAYOUTS} == DECODABLE.keys()
    for row in SPOKEN:
        for layer in ("spec", "client", "guest"):
            assert getattr(row, layer) is not None or row.why, (row.opcode.name, layer)


def test_the_spec_registry_numbers_requests_as_the_codec_names_them() -> None:
    for op in REGISTRY.values():
        if op.opcode is None:
            continue
        assert Op(op.opcode).name == op.name, f"spec {op.name} is FUSE {Op(op.opcode).name}"
        assert BY_OPCODE[Op(op.opcode)].spec == op.name
    for row in SPOKEN:
        if row.spec is not None:
            assert REGISTRY[row.spec].opcode == (row.same_as or row.opcode), row.opcode.name


def test_the_codec_has_a_layout_for_every_served_opcode() -> None:
    served = set(BY_OPCODE)
    assert served <= p.LAYOUTS.keys()
    assert p.LAYOUTS.keys() - served <= UNSUPPORTED.keys()


@pytest.fixture
def dispatcher(tmp_path: Path) -> Dispatcher:
    fs = PassthroughFS(str(tmp_path))
    window = ShmemWindow(2 << 20)
    session = fs.session()
    try:
        yield Dispatcher(session, _Window(window))
    finally:
        session.close()
        window.close()


class _Window:
    """The front-end's half of SHMEM_MAP/_UNMAP, on a real reserved window."""

    def __init__(self, window: ShmemWindow) -> None:
        self.window = window

    def shmem_map(self, fd: int, fd_offset: int, shm_offset: int, length: int,
                  writable: bool) -> None:
        self.window.map(fd, fd_offset, shm_offset, length, writable)

    def shmem_unmap(self, ranges: list[tuple[int, int]]) -> None:
        self.window.unmap_each(ranges)


def test_the_dispatcher_routes_each_served_opcode_with_the_codecs_layout(
        dispatcher: Dispatcher) -> None:
    assert set(dispatcher.routes) == set(BY_OPCODE)
    for opcode, route in dispatcher.routes.items():
        assert route.layout is p.LAYOUTS[opcode][0], Op(opcode).name


def _header(opcode: int, unique: int, body: bytes = b"") -> bytes:
    return IN_HEADER.pack(IN_HEADER.size + len(body), opcode, unique, 1, 0, 0, 0, 0) + body


@pytest.mark.parametrize("opcode", sorted(UNSUPPORTED), ids=lambda o: o.name)
def test_an_unsupported_opcode_gets_its_listed_errno(dispatcher: Dispatcher, opcode: Op) -> None:
    init = p.InitIn(7, 41, 131072, 0)
    dispatcher.handle(p.encode_request(p.Request(Op.INIT, 1, 0, init)))
    # a well-formed body where the codec knows the layout; any bytes where it does not
    body = DECODABLE[opcode].encode() if opcode in p.LAYOUTS else bytes(64)
    reply = dispatcher.handle(_header(opcode, 2, body))
    assert reply is not None
    length, error, unique = struct.unpack_from("<IiQ", reply)
    assert (unique, -error) == (2, UNSUPPORTED[opcode])


def _opcodes_sent() -> dict[str, set[Op]]:
    """FuseClient's methods and the opcodes each names, read from its source."""
    tree = ast.parse(inspect.getsource(fuse_client.FuseClient))
    methods = tree.body[0].body  # type: ignore[attr-defined]
    sent: dict[str, set[Op]] = {}
    for method in methods:
        if isinstance(method, ast.FunctionDef):
            sent[method.name] = {
                Op[node.attr] for node in ast.walk(method)
                if isinstance(node, ast.Attribute) and (
                    isinstance(node.value, ast.Attribute) and node.value.attr == "Opcode"
                    # the hot path's prebuilt encoders are named by opcode: hot.FORGET
                    or isinstance(node.value, ast.Name) and node.value.id == "hot"
                    and node.attr in Op.__members__)}
    return {name: ops for name, ops in sent.items() if ops}


def test_the_client_sends_each_opcode_from_the_listed_method() -> None:
    sent = _opcodes_sent()
    for row in SPOKEN:
        if row.client is not None:
            assert row.opcode in sent.get(row.client, set()), (row.opcode.name, row.client)
    typed = {op for ops in sent.values() for op in ops}
    assert typed == {row.opcode for row in SPOKEN if row.client is not None}


def test_the_conformance_guest_drives_each_listed_opcode() -> None:
    abstract = {name for name, member in inspect.getmembers(Guest)
                if getattr(member, "__isabstractmethod__", False)}
    listed = {row.guest for row in SPOKEN if row.guest is not None}
    assert listed <= {name for name, _ in inspect.getmembers(Guest, inspect.isfunction)}
    memory = {"load", "store"}  # accesses to the window, not requests
    assert abstract - memory <= listed
    for row in SPOKEN:
        if row.guest is not None and row.spec is not None:
            assert row.guest == row.spec.lower() or row.opcode == Op.DESTROY, row
