"""The host's side of the guest agent's protocol (agent.c): one request, one reply.

A message is a list of byte strings, `u32 count` then `count × (u32 length, bytes)`; a
request is `[operation, arguments...]`, a reply `[status, results...]` with status 0 or
the errno the guest kernel answered, raised here as OSError(errno).

Every call has a deadline (CALL_LIMIT unless the caller gives one): a guest whose file
system hangs (a back-end that stopped answering, a fault nobody handles) is a clear
AgentTimeout naming the call, never a silent wait. After a timeout the channel is out of
step (a late reply would answer the next call), so every later call raises AgentLost.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
import time

_U32 = struct.Struct("<I")
AT_FDCWD = -100
# seconds one request may take under TCG on a loaded machine: a single system call or a
# short busybox command takes well under a second; longer work gives its own deadline
CALL_LIMIT = 180.0


class AgentLost(RuntimeError):
    """The agent's channel closed or is out of step: the guest died, reset, hung up, or
    did not answer in time. Not an OSError: no guest system call answered it."""


class AgentTimeout(AgentLost):
    """The guest did not answer a request within its deadline."""


def _encode(fields: list[bytes]) -> bytes:
    parts = [_U32.pack(len(fields))]
    for f in fields:
        parts += [_U32.pack(len(f)), f]
    return b"".join(parts)


class Agent:
    """A connected agent; `call(op, *args)` returns the reply's results as bytes."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.lost = ""  # why the channel can no longer be used, once it cannot

    def _exactly(self, n: int, deadline: float, what: str) -> bytes:
        chunks, left = [], n
        while left:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._lose(AgentTimeout(f"the guest agent did not answer {what}"))
            self._sock.settimeout(remaining)
            try:
                chunk = self._sock.recv(min(left, 1 << 20))
            except TimeoutError:
                continue  # the deadline check above says so
            except OSError as e:
                raise self._lose(AgentLost(f"the guest agent's channel failed: {e}")) from None
            if not chunk:
                raise self._lose(AgentLost("the guest agent's channel closed"))
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def _lose(self, why: AgentLost) -> AgentLost:
        self.lost = str(why)
        return why

    def receive(self, timeout: float = CALL_LIMIT, what: str = "") -> list[bytes]:
        """The next message, within `timeout` seconds (AgentTimeout if not)."""
        if self.lost:
            raise AgentLost(f"the guest agent is out of reach: {self.lost}")
        what = f"{what or 'a message'} within {timeout:g} s"
        deadline = time.monotonic() + timeout
        (count,) = _U32.unpack(self._exactly(4, deadline, what))
        return [self._exactly(_U32.unpack(self._exactly(4, deadline, what))[0], deadline, what)
                for _ in range(count)]

    def call(self, op: str, *args: int | str | bytes, timeout: float = CALL_LIMIT
             ) -> list[bytes]:
        """One request; its results, OSError(errno) if the guest's call failed."""
        if self.lost:
            raise AgentLost(f"the guest agent is out of reach: {self.lost}")
        fields = [op.encode()] + [
            a if isinstance(a, bytes) else str(a).encode() if isinstance(a, int)
            else os.fsencode(a) for a in args]
        self._sock.settimeout(timeout)
        try:
            self._sock.sendall(_encode(fields))
        except OSError as e:
            raise self._lose(AgentLost(f"the guest agent's channel failed: {e}")) from None
        status, *results = self.receive(timeout, _describe(op, args))
        if int(status):
            code = int(status)
            raise OSError(code, f"{os.strerror(code)} (guest {op})")
        return results

    def sh(self, command: str, timeout: float = CALL_LIMIT) -> tuple[int, str]:
        """Run `command` under the guest's busybox sh: (exit status, output)."""
        status, output = self.call("sh", command, timeout=timeout)
        return int(status), output.decode(errors="replace")

    def check(self, command: str, timeout: float = CALL_LIMIT) -> str:
        """Run `command`; its output, or RuntimeError with it when it exits non-zero."""
        status, output = self.sh(command, timeout)
        if status:
            raise RuntimeError(f"guest `{command}` exited {status}: {output.strip()[-500:]}")
        return output

    def close(self) -> None:
        self._sock.close()


def _describe(op: str, args: tuple[int | str | bytes, ...]) -> str:
    """A request as an error message names it: short, printable."""
    shown = " ".join(repr(a[:60]) if isinstance(a, bytes) else str(a)[:120] for a in args)
    return f"`{op} {shown}`".replace("\n", " ")


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
