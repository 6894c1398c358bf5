"""The property families: which properties each judges, with which rules, from which scene.

A family groups the properties one kind of run can exercise: the operations it runs, the
scene each case starts from, what it probes after every change, which aspects it
compares loosely (they belong to other families), and the capabilities each of its
properties needs from a target.
"""

from __future__ import annotations

from dataclasses import dataclass

from pagefs.conformance.operations import DIR_NAMES, Operation, operations
from pagefs.conformance.session import ATTRS, BYTES
from pagefs.conformance.target import (
    CONFINED,
    CREDENTIALS,
    MAPPINGS,
    OWN_HANDLES,
    PEERS,
    RACES,
    READ_ONLY,
)
from pagefs.spec.datatypes import Caller

__all__ = ["DIR_NAMES", "FAMILIES", "FILE_NAMES", "NOT_EXERCISED", "PARTS", "Family",
           "family_of"]

FILE_NAMES = (b"a", b"b", b"c")


@dataclass(frozen=True)
class Family:
    """A property group: its properties, the capabilities each needs, its operations."""

    name: str
    needs: dict[str, frozenset[str]]
    operations: frozenset[Operation]  # the declared operations its machine runs
    read_only: bool = False
    bad_args: bool = False  # draw stale ids and malformed names as well as valid ones
    loose: frozenset[str] = frozenset()  # aspects other families judge (session.ATTRS/BYTES)
    files: tuple[bytes, ...] = FILE_NAMES
    scene: str = "file"  # how each case starts (see SpecMachine.scene)
    probe: str = ""  # after each change, observe it from every side: bytes, attrs, handles
    callers: tuple[Caller, ...] = ()  # who guest g's requests act as (root by default)
    modes: tuple[int, ...] = ()  # the permission bits its requests ask for, if not MODES

    @property
    def properties(self) -> tuple[str, ...]:
        return tuple(self.needs)


_DATA_OPERATIONS = operations(
    "host.create", "host.write", "host.truncate", "host.unlink", "host.read", "LOOKUP", "OPEN",
    "CREATE", "READ", "WRITE", "RELEASE", "SETUPMAPPING", "REMOVEMAPPING", "LOAD", "STORE",
    "FSYNC", "FALLOCATE",
)
_META_OPERATIONS = operations(
    "host.create", "host.write", "host.truncate", "host.chmod", "host.stat", "LOOKUP",
    "GETATTR", "SETATTR", "OPEN", "CREATE", "WRITE", "STORE", "SETUPMAPPING", "RELEASE",
)
_HANDLE_OPERATIONS = operations(
    "host.create", "host.write", "host.unlink", "host.rename", "host.truncate", "LOOKUP",
    "FORGET", "GETATTR", "OPEN", "CREATE", "READ", "WRITE", "RELEASE", "FLUSH", "FSYNC",
    "SETUPMAPPING", "REMOVEMAPPING", "LOAD", "STORE", "OPENDIR", "READDIR", "RELEASEDIR",
    "DESTROY", "INIT",
)
_NAMESPACE_OPERATIONS = operations(
    "host.create", "host.mkdir", "host.unlink", "host.rmdir", "host.rename", "host.symlink",
    "LOOKUP", "FORGET", "CREATE", "MKDIR", "UNLINK", "RMDIR", "RENAME", "SYMLINK", "READLINK",
    "OPENDIR", "READDIR", "RELEASEDIR", "GETATTR", "STATFS", "LINK", "MKNOD", "SETXATTR",
    "GETXATTR", "LISTXATTR", "REMOVEXATTR", "SYNCFS",
)
_RO_OPERATIONS = operations(
    "host.create", "host.write", "host.truncate", "host.mkdir", "host.read", "LOOKUP", "OPEN",
    "CREATE", "READ", "WRITE", "SETATTR", "SETUPMAPPING", "LOAD", "STORE", "UNLINK", "RMDIR",
    "MKDIR", "RENAME", "SYMLINK", "GETATTR", "RELEASE", "LINK", "MKNOD", "SETXATTR",
    "REMOVEXATTR", "FALLOCATE", "SYNCFS",
)
_CONFINE_OPERATIONS = operations(
    "host.symlink", "host.mkfifo", "host.mkdir", "host.create", "host.write", "LOOKUP", "OPEN",
    "OPENDIR", "READDIR", "READLINK", "GETATTR", "READ", "CREATE", "RELEASEDIR", "RELEASE",
)

_OWNERSHIP_OPERATIONS = operations(
    "host.create", "host.chmod", "host.write", "LOOKUP", "GETATTR", "SETATTR", "OPEN",
    "CREATE", "MKDIR", "WRITE", "RELEASE",
)
# A user outside the export's groups (its set-gid directory is root's group), with a
# umask: every OWNERSHIP rule has something to decide for it.
USER = Caller(uid=1000, gid=1000, umask=0o022)
SET_ID_MODES = (0o644, 0o755, 0o2755, 0o4755, 0o6755, 0o2745, 0o6777, 0o2777, 0o666, 0o600)

NONE: frozenset[str] = frozenset()
FAMILIES: tuple[Family, ...] = (
    Family("data coherence", {"COH-READ": NONE, "COH-WRITE": frozenset({MAPPINGS}),
                              "COH-PEER": frozenset({MAPPINGS, PEERS}),
                              "EOF-FAULT": frozenset({MAPPINGS}), "ISOLATION": NONE},
           _DATA_OPERATIONS, loose=frozenset({ATTRS}), files=FILE_NAMES[:2],
           scene="mapped", probe="bytes"),
    Family("metadata", {"COH-META": NONE}, _META_OPERATIONS, loose=frozenset({BYTES}),
           files=FILE_NAMES[:2], probe="attrs"),
    Family("handles and lifetimes", {"ACCESS-MODE": NONE, "HANDLE": frozenset({OWN_HANDLES}),
                                     "LIFETIME": NONE, "NODEID": frozenset({OWN_HANDLES}),
                                     "RECLAIM": frozenset({PEERS})},
           _HANDLE_OPERATIONS, bad_args=True, loose=frozenset({ATTRS}),
           scene="opened", probe="handles"),
    Family("namespace", {"NAMESPACE": NONE}, _NAMESPACE_OPERATIONS, bad_args=True,
           loose=frozenset({ATTRS, BYTES}), scene="tree"),
    Family("ownership and set-id", {"OWNERSHIP": frozenset({CREDENTIALS})},
           _OWNERSHIP_OPERATIONS, loose=frozenset({BYTES}), scene="owners", probe="attrs",
           callers=(USER,), modes=SET_ID_MODES),
    Family("read-only export", {"RO-EXPORT": frozenset({READ_ONLY})}, _RO_OPERATIONS,
           read_only=True, loose=frozenset({ATTRS, BYTES}), scene="read-only"),
    Family("confinement", {"CONFINE": frozenset({CONFINED})}, _CONFINE_OPERATIONS,
           bad_args=True, loose=frozenset({ATTRS, BYTES}), scene="traps"),
)

# Parts of a property that need a capability of their own: on a target without it, the
# property is judged on the rest and its verdict says which part was n/a, and why.
PARTS: dict[str, tuple[tuple[str, str], ...]] = {
    "EOF-FAULT": ((RACES, "a read the host truncates mid-copy (its fault count)"),),
}

NOT_EXERCISED = {
    "SINGLE-COPY": "a memory measurement (guest-private memory per guest), made by the "
                   "guest benchmark, not an observation of requests and accesses",
    "DURABLE": "stable storage is observable only across a host crash, which no target "
               "offers",
}


def family_of(prop: str) -> Family | None:
    return next((f for f in FAMILIES if prop in f.needs), None)
