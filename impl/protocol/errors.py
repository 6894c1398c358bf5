"""The one exception the codec raises."""

from __future__ import annotations


class ProtocolError(Exception):
    """A message that cannot be encoded or decoded.

    `errno` is what the peer should be told (EINVAL for a malformed request, ENOSYS for an
    opcode this codec does not speak, EPROTO for a malformed reply). When the request header
    was readable, `unique` and `opcode` say which request failed, so a server can still answer
    it; both are None when not even the header could be read.
    """

    def __init__(
        self, errno: int, message: str, *, unique: int | None = None, opcode: int | None = None
    ) -> None:
        super().__init__(message)
        self.errno = errno
        self.unique = unique
        self.opcode = opcode
