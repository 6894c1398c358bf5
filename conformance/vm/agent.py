"""The host's side of the guest agent's protocol (agent.c): one request, one reply.

A message is a list of byte strings, `u32 count` then `count × (u32 length, bytes)`; a
request is `[operation, arguments...]`, a reply `[status, results...]` with status 0 or
the errno the guest kernel answered, raised here as OSError(errno).
"""

from __future__ import annotations

import errno
import os
import socket
import struct

_U32 = struct.Struct("<I")
AT_FDCWD = -100


class AgentLost(ConnectionError):
    """The agent's channel closed: the guest died, reset or hung up."""


def _encode(fields: list[bytes]) -> bytes:
    parts = [_U32.pack(len(fields))]
    for f in fields:
        parts += [_U32.pack(len(f)), f]
    return b"".join(parts)


class Agent:
    """A connected agent; `call(op, *args)` returns the reply's results as bytes."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def _exactly(self, n: int) -> bytes:
        chunks, left = [], n
        while left:
            chunk = self._sock.recv(min(left, 1 << 20))
            if not chunk:
                raise AgentLost("the guest agent's channel closed")
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def receive(self) -> list[bytes]:
        (count,) = _U32.unpack(self._exactly(4))
        return [self._exactly(_U32.unpack(self._exactly(4))[0]) for _ in range(count)]

    def call(self, op: str, *args: int | str | bytes) -> list[bytes]:
        fields = [op.encode()] + [
            a if isinstance(a, bytes) else str(a).encode() if isinstance(a, int)
            else os.fsencode(a) for a in args]
        self._sock.sendall(_encode(fields))
        status, *results = self.receive()
        if int(status):
            code = int(status)
            raise OSError(code, f"{os.strerror(code)} (guest {op})")
        return results

    def sh(self, command: str) -> tuple[int, str]:
        """Run `command` under the guest's busybox sh: (exit status, output)."""
        status, output = self.call("sh", command)
        return int(status), output.decode(errors="replace")

    def check(self, command: str) -> str:
        """Run `command`; its output, or RuntimeError with it when it exits non-zero."""
        status, output = self.sh(command)
        if status:
            raise RuntimeError(f"guest `{command}` exited {status}: {output.strip()[-500:]}")
        return output

    def close(self) -> None:
        self._sock.close()


def ints(results: list[bytes]) -> list[int]:
    return [int(r) for r in results]


def stat_result(results: list[bytes]) -> os.stat_result:
    """An os.stat_result from the agent's 13 numbers (mode ino dev nlink uid gid size
    atime_ns mtime_ns ctime_ns blksize blocks rdev)."""
    mode, ino, dev, nlink, uid, gid, size, at, mt, ct, blksize, blocks, rdev = ints(results)
    seconds = [t // 10**9 for t in (at, mt, ct)]
    floats = [t / 1e9 for t in (at, mt, ct)]
    return os.stat_result((mode, ino, dev, nlink, uid, gid, size, *seconds, *floats,
                           at, mt, ct, blksize, blocks, rdev))


def no_window() -> OSError:
    return OSError(errno.ENOSYS, "no DAX window")
