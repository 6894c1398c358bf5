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
from typing import ClassVar, Self

from .errors import ProtocolError

Buffer = bytes | bytearray | memoryview

NSEC_PER_SEC = 1_000_000_000
U32 = 0xFFFF_FFFF


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
    _bit_checks: ClassVar[tuple[tuple[int, int, str], ...]]
    _nsec_checks: ClassVar[tuple[tuple[int, str], ...]]

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        # @dataclass(slots=True) builds a second class, and that one lists the fields.
        names = cls.__dict__.get("__slots__") or tuple(cls.__dict__.get("__annotations__", ()))
        getter = operator.attrgetter(*names)
        # attrgetter of one name gives the value itself, not a 1-tuple
        cls._values = (staticmethod(lambda m: (getter(m),))  # type: ignore[assignment]
                       if len(names) == 1 else getter)
        cls._bit_checks = tuple(
            (names.index(f), known, f"{cls.__name__}.{f}") for f, known in cls.KNOWN_BITS.items()
        )
        cls._nsec_checks = tuple((names.index(f), f"{cls.__name__}.{f}") for f in cls.NSEC_FIELDS)

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
        return cls(*values)
