"""The operation registry: every operation of the spec by name, with its parameters.

Requests carry FUSE names and opcodes ("LOOKUP", "SETUPMAPPING"), host operations are
"host.write" and so on, memory accesses are "LOAD" and "STORE". Each parameter has a kind
(taken from its type: `NodeId`, `Name`, `Offset`...), so that other code can enumerate
operations, generate arguments and serialize calls without knowing the spec's modules.
Every call is `REGISTRY[name](state, *args) -> tuple[Outcome, ...]`.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass

from pagefs.spec import files, host, mappings, memory, namespace, session, special
from pagefs.spec.datatypes import Outcome, State

Kind = typing.Literal["host", "request", "memory"]


@dataclass(frozen=True)
class Param:
    """One parameter: its name, its kind (the NewType's name, or "bool"/"int"), and
    whether None is allowed (SETATTR's optional fields)."""

    name: str
    kind: str
    optional: bool = False


@dataclass(frozen=True)
class Operation:
    """An operation: `name`, `kind` (host, request or memory), the module's concern,
    the FUSE opcode of a request, its parameters and the function that defines it."""

    name: str
    kind: Kind
    concern: str
    opcode: int | None
    params: tuple[Param, ...]
    function: Callable[..., tuple[Outcome, ...]]

    def __call__(self, state: State, *args: object) -> tuple[Outcome, ...]:
        return self.function(state, *args)

    @property
    def doc(self) -> str:
        return inspect.getdoc(self.function) or ""


def _params(function: Callable[..., object]) -> tuple[Param, ...]:
    hints = typing.get_type_hints(function)
    params = []
    for name in list(inspect.signature(function).parameters)[1:]:  # after `state`
        hint = hints[name]
        args = typing.get_args(hint)
        optional = type(None) in args
        if optional:
            hint = next(a for a in args if a is not type(None))
        params.append(Param(name, getattr(hint, "__name__", str(hint)), optional))
    return tuple(params)


# (name, kind, concern, FUSE opcode, function), in the order the semantics document uses.
_TABLE: tuple[tuple[str, Kind, str, int | None, Callable[..., tuple[Outcome, ...]]], ...] = (
    ("INIT", "request", "session", 26, session.init),
    ("DESTROY", "request", "session", 38, session.destroy),
    ("LOOKUP", "request", "namespace", 1, namespace.lookup),
    ("FORGET", "request", "namespace", 2, namespace.forget),
    ("GETATTR", "request", "namespace", 3, namespace.getattr_),
    ("READLINK", "request", "namespace", 5, namespace.readlink),
    ("SYMLINK", "request", "namespace", 6, namespace.symlink),
    ("MKDIR", "request", "namespace", 9, namespace.mkdir),
    ("UNLINK", "request", "namespace", 10, namespace.unlink),
    ("RMDIR", "request", "namespace", 11, namespace.rmdir),
    ("RENAME", "request", "namespace", 12, namespace.rename),  # with flags: RENAME2 (45)
    ("OPENDIR", "request", "namespace", 27, namespace.opendir),
    ("READDIR", "request", "namespace", 28, namespace.readdir),
    ("RELEASEDIR", "request", "namespace", 29, namespace.releasedir),
    ("STATFS", "request", "namespace", 17, namespace.statfs),
    ("SETATTR", "request", "files", 4, files.setattr_),
    ("OPEN", "request", "files", 14, files.open_),
    ("CREATE", "request", "files", 35, files.create),
    ("READ", "request", "files", 15, files.read),
    ("WRITE", "request", "files", 16, files.write),
    ("FLUSH", "request", "files", 25, files.flush),
    ("FSYNC", "request", "files", 20, files.fsync),
    ("RELEASE", "request", "files", 18, files.release),
    ("LINK", "request", "special", 13, special.link),
    ("MKNOD", "request", "special", 8, special.mknod),
    ("SETXATTR", "request", "special", 21, special.setxattr),
    ("GETXATTR", "request", "special", 22, special.getxattr),
    ("LISTXATTR", "request", "special", 23, special.listxattr),
    ("REMOVEXATTR", "request", "special", 24, special.removexattr),
    ("FALLOCATE", "request", "special", 43, special.fallocate),
    ("SYNCFS", "request", "special", 50, special.syncfs),
    ("SETUPMAPPING", "request", "mappings", 48, mappings.setupmapping),
    ("REMOVEMAPPING", "request", "mappings", 49, mappings.removemapping),
    ("LOAD", "memory", "memory", None, memory.load),
    ("STORE", "memory", "memory", None, memory.store),
    ("host.write", "host", "host", None, host.write),
    ("host.truncate", "host", "host", None, host.truncate),
    ("host.create", "host", "host", None, host.create),
    ("host.mkdir", "host", "host", None, host.mkdir),
    ("host.symlink", "host", "host", None, host.symlink),
    ("host.mkfifo", "host", "host", None, host.mkfifo),
    ("host.unlink", "host", "host", None, host.unlink),
    ("host.rmdir", "host", "host", None, host.rmdir),
    ("host.rename", "host", "host", None, host.rename),
    ("host.chmod", "host", "host", None, host.chmod),
    ("host.read", "host", "host", None, host.read),
    ("host.stat", "host", "host", None, host.stat),
)

REGISTRY: dict[str, Operation] = {
    name: Operation(name, kind, concern, opcode, _params(function), function)
    for name, kind, concern, opcode, function in _TABLE
}
"""Every operation of the spec, by name."""


def apply(state: State, name: str, args: tuple[object, ...]) -> tuple[Outcome, ...]:
    """The allowed outcomes of operation `name` with `args` from `state`."""
    return REGISTRY[name](state, *args)


def operations(kind: Kind | None = None) -> tuple[Operation, ...]:
    """The registered operations, of one kind or all, in registry order."""
    return tuple(op for op in REGISTRY.values() if kind is None or op.kind == kind)
