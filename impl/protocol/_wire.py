"""Small checked primitives shared by the request and reply layouts.

Every decoder in this package reads through these helpers, so the rules "the body has exactly
the size fuse.h gives", "a name is NUL-terminated", "only known flag bits" and "nanoseconds
below one second" are written once.
"""

from __future__ import annotations

import errno
import operator
import struct
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Self, TypeVar

from .errors import ProtocolError

Buffer = bytes | bytearray | memoryview

NSEC_PER_SEC = 1_000_000_000
U32 = 0xFFFF_FFFF
T = TypeVar("T")


def pack(layout: struct.Struct, *values: int | bytes) -> bytes:
    """struct.pack that reports out-of-range fields as a ProtocolError."""
    try:
        return layout.pack(*values)
    except struct.error as exc:
        raise ProtocolError(errno.EINVAL, f"cannot encode field: {exc}") from None


def expect_size(body: Buffer, size: int, what: str) -> None:
    if len(body) != size:
        raise ProtocolError(errno.EINVAL, f"{what}: {len(body)} bytes, expected {size}")


def expect_at_least(body: Buffer, size: int, what: str) -> None:
    if len(body) < size:
        raise ProtocolError(errno.EINVAL, f"{what}: {len(body)} bytes, expected >= {size}")


def known_bits(value: int, known: int, what: str) -> int:
    if value & ~known:
        raise ProtocolError(errno.EINVAL, f"{what}: unknown bits {value & ~known:#x}")
    return value


def nanoseconds(value: int, what: str) -> int:
    if value >= NSEC_PER_SEC:
        raise ProtocolError(errno.EINVAL, f"{what}: {value} ns is not below one second")
    return value


def cstrings(body: Buffer, count: int, what: str) -> tuple[bytes, ...]:
    """Split a body that is exactly `count` NUL-terminated strings."""
    raw = bytes(body)
    if not raw.endswith(b"\0"):
        raise ProtocolError(errno.EINVAL, f"{what}: missing NUL terminator")
    parts = raw[:-1].split(b"\0")
    if len(parts) != count:
        raise ProtocolError(errno.EINVAL, f"{what}: {len(parts)} strings, expected {count}")
    return tuple(parts)


def cstring(value: bytes, what: str) -> bytes:
    """Encode one string with its NUL terminator; a NUL inside cannot travel on the wire."""
    if b"\0" in value:
        raise ProtocolError(errno.EINVAL, f"{what}: contains NUL")
    return value + b"\0"


def frozen_builder(cls: type[T], at: int | None = None) -> Callable[..., T]:
    """`cls(*fields)`, every field given in order, for a frozen slotted dataclass whose
    __init__ only stores its fields, in a tenth of the time. With `at`, the builder takes
    one sequence instead, the fields at `at`, `at + 1`, ... of it (a whole reply's unpack).

    A frozen __init__ stores each field through object.__setattr__ by name (about 0.1 us
    a field here: 1.8 us for fuse_attr's 16), because the class's own __setattr__ refuses.
    This stores them with plain slot stores into an instance of a twin class, one with the
    same base and the same slots, then makes that instance a `cls` by __class__ assignment
    (which Python allows between classes of one layout). The result is indistinguishable
    from `cls(*fields)`: the same type, slots, equality, hash and repr, and frozen.
    """
    names: tuple[str, ...] = cls.__dict__["__slots__"]
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.frozen or hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__}: not a frozen dataclass that only stores its fields")
    twin = type(f"_{cls.__name__}Fields", cls.__bases__, {"__slots__": names},
                **({"twin": True} if issubclass(cls, FixedLayout) else {}))
    scope: dict[str, Any] = {"new": object.__new__, "twin": twin, "cls": cls}
    if at is None:
        params_text, values = ", ".join(names), names
    else:
        params_text, values = "v", tuple(f"v[{at + i}]" for i in range(len(names)))
    stores = "".join(f"    o.{name} = {value}\n" for name, value in zip(names, values,
                                                                          strict=True))
    exec(f"def build({params_text}):\n    o = new(twin)\n{stores}"  # noqa: S102
         "    o.__class__ = cls\n    return o\n", scope)
    build: Callable[..., T] = scope["build"]
    build.__qualname__ = f"{cls.__name__}.build"
    return build


class FixedLayout:
    """A body that is exactly one fuse.h struct whose fields are the dataclass's, in order.

    Subclasses (slotted dataclasses) name their struct in LAYOUT (padding as `x`), the flag
    fields with the bits fuse.h defines in KNOWN_BITS, and their nanosecond fields in
    NSEC_FIELDS; encode and decode follow from that.
    """

    __slots__ = ()
    LAYOUT: ClassVar[struct.Struct]
    KNOWN_BITS: ClassVar[dict[str, int]] = {}
    NSEC_FIELDS: ClassVar[tuple[str, ...]] = ()
    # Worked out once per class, so a message on the hot path costs one unpack and one
    # construction: the fields' values in order, and which positions decode must judge.
    _values: ClassVar[Callable[..., tuple[int, ...]]]
    build: ClassVar[Callable[..., Any]]  # cls(*fields), fast (frozen_builder)
    _bit_checks: ClassVar[tuple[tuple[int, int, str], ...]]
    _nsec_checks: ClassVar[tuple[tuple[int, str], ...]]

    def __init_subclass__(cls, twin: bool = False, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if twin:  # frozen_builder's: holds the fields of one being built, nothing more
            return
        # @dataclass(slots=True) builds a second class, and that one lists the fields
        # (and is the finished dataclass: its builder can be made).
        slotted = "__slots__" in cls.__dict__
        names = cls.__dict__.get("__slots__") or tuple(cls.__dict__.get("__annotations__", ()))
        getter = operator.attrgetter(*names)
        # attrgetter of one name gives the value itself, not a 1-tuple
        cls._values = (staticmethod(lambda m: (getter(m),))  # type: ignore[assignment]
                       if len(names) == 1 else getter)
        cls._bit_checks = tuple(
            (names.index(f), known, f"{cls.__name__}.{f}") for f, known in cls.KNOWN_BITS.items()
        )
        cls._nsec_checks = tuple((names.index(f), f"{cls.__name__}.{f}") for f in cls.NSEC_FIELDS)
        cls.build = frozen_builder(cls) if slotted else cls

    def encode(self) -> bytes:
        return pack(self.LAYOUT, *self._values(self))

    @classmethod
    def decode(cls, body: Buffer) -> Self:
        expect_size(body, cls.LAYOUT.size, cls.__name__)
        return cls.from_values(cls.LAYOUT.unpack(body))

    @classmethod
    def from_values(cls, values: Sequence[int]) -> Self:
        """The body of these field values (as LAYOUT unpacks them), judged as `decode`
        judges them: for a caller that unpacked them with more in one call."""
        for index, known, what in cls._bit_checks:
            known_bits(values[index], known, what)
        for index, what in cls._nsec_checks:
            nanoseconds(values[index], what)
        return cls.build(*values)
