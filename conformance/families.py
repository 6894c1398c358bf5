"""The property families: which properties each judges, with which rules, from which scene.

A family groups the properties one kind of run can exercise: the rules it enables, the
scene each case starts from, what it probes after every change, which aspects it
compares loosely (they belong to other families), and the capabilities each of its
properties needs from a target.
"""

from __future__ import annotations

from dataclasses import dataclass

from pagefs.conformance.session import ATTRS, BYTES
from pagefs.conformance.target import CONFINED, MAPPINGS, OWN_HANDLES, PEERS, READ_ONLY

FILE_NAMES = (b"a", b"b", b"c")
DIR_NAMES = (b"d", b"e")


@dataclass(frozen=True)
class Family:
    """A property group: its properties, the capabilities each needs, its rules."""

    name: str
    needs: dict[str, frozenset[str]]
    rules: frozenset[str]
    read_only: bool = False
    bad_args: bool = False  # draw stale ids and malformed names as well as valid ones
    loose: frozenset[str] = frozenset()  # aspects other families judge (session.ATTRS/BYTES)
    files: tuple[bytes, ...] = FILE_NAMES
    scene: str = "file"  # how each case starts (see SpecMachine.scene)
    probe: str = ""  # after each change, observe it from every side: bytes, attrs, handles

    @property
    def properties(self) -> tuple[str, ...]:
        return tuple(self.needs)


_DATA_RULES = {"host_create", "host_write", "host_truncate", "host_unlink", "host_read",
               "lookup", "open", "create", "read", "write", "release", "setupmapping",
               "removemapping", "load", "store", "fsync"}
_META_RULES = {"host_create", "host_write", "host_truncate", "host_chmod", "host_stat",
               "lookup", "getattr", "setattr", "open", "create", "write", "store",
               "setupmapping", "release"}
_HANDLE_RULES = {"host_create", "host_write", "host_unlink", "host_rename", "host_truncate",
                 "lookup", "forget", "getattr", "open", "create", "read", "write", "release",
                 "flush", "fsync", "setupmapping", "removemapping", "load", "store", "opendir",
                 "readdir", "releasedir", "destroy", "init"}
_NAMESPACE_RULES = {"host_create", "host_mkdir", "host_unlink", "host_rmdir", "host_rename",
                    "host_symlink", "lookup", "forget", "create", "mkdir", "unlink", "rmdir",
                    "rename", "symlink", "readlink", "opendir", "readdir", "releasedir",
                    "getattr", "statfs"}
_RO_RULES = {"host_create", "host_write", "host_truncate", "host_mkdir", "host_read",
             "lookup", "open", "create", "read", "write", "setattr", "setupmapping", "load",
             "store", "unlink", "rmdir", "mkdir", "rename", "symlink", "getattr", "release"}
_CONFINE_RULES = {"host_symlink", "host_mkfifo", "host_mkdir", "host_create", "host_write",
                  "lookup", "open", "opendir", "readdir", "readlink", "getattr", "read",
                  "create", "releasedir", "release"}

NONE: frozenset[str] = frozenset()
FAMILIES: tuple[Family, ...] = (
    Family("data coherence", {"COH-READ": NONE, "COH-WRITE": frozenset({MAPPINGS}),
                              "COH-PEER": frozenset({MAPPINGS, PEERS}),
                              "EOF-FAULT": frozenset({MAPPINGS}), "ISOLATION": NONE},
           frozenset(_DATA_RULES), loose=frozenset({ATTRS}), files=FILE_NAMES[:2],
           scene="mapped", probe="bytes"),
    Family("metadata", {"COH-META": NONE}, frozenset(_META_RULES), loose=frozenset({BYTES}),
           files=FILE_NAMES[:2], probe="attrs"),
    Family("handles and lifetimes", {"ACCESS-MODE": NONE, "HANDLE": frozenset({OWN_HANDLES}),
                                     "LIFETIME": NONE, "NODEID": frozenset({OWN_HANDLES}),
                                     "RECLAIM": frozenset({PEERS})},
           frozenset(_HANDLE_RULES), bad_args=True, loose=frozenset({ATTRS}),
           scene="opened", probe="handles"),
    Family("namespace", {"NAMESPACE": NONE}, frozenset(_NAMESPACE_RULES), bad_args=True,
           loose=frozenset({ATTRS, BYTES}), scene="tree"),
    Family("read-only export", {"RO-EXPORT": frozenset({READ_ONLY})}, frozenset(_RO_RULES),
           read_only=True, loose=frozenset({ATTRS, BYTES}), scene="read-only"),
    Family("confinement", {"CONFINE": frozenset({CONFINED})}, frozenset(_CONFINE_RULES),
           bad_args=True, loose=frozenset({ATTRS, BYTES}), scene="traps"),
)

NOT_EXERCISED = {
    "SINGLE-COPY": "a memory measurement (guest-private memory per guest), made by the "
                   "guest benchmark, not an observation of requests and accesses",
    "DURABLE": "stable storage is observable only across a host crash, which no target "
               "offers",
}


def family_of(prop: str) -> Family | None:
    return next((f for f in FAMILIES if prop in f.needs), None)
