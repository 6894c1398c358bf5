"""The host side of the guest agent's channel never waits for ever: a guest that stops
answering is a clear AgentTimeout naming the request, and the channel, now out of step,
refuses every later request at once (AgentLost). A real socket, an agent that is silent."""

from __future__ import annotations

import socket
import struct
import time

import pytest

from pagefs.conformance.vm.agent import Agent, AgentLost, AgentTimeout


def _reply(fields: list[bytes]) -> bytes:
    return struct.pack("<I", len(fields)) + b"".join(
        struct.pack("<I", len(f)) + f for f in fields)


def test_a_silent_guest_is_a_timeout_naming_the_request_then_the_channel_is_lost() -> None:
    host, guest = socket.socketpair()
    with host, guest:
        agent = Agent(host)
        begun = time.monotonic()
        with pytest.raises(AgentTimeout, match=r"`sh ls /mnt/pagefs` within 0.3 s"):
            agent.call("sh", "ls /mnt/pagefs", timeout=0.3)
        assert time.monotonic() - begun < 30  # bounded, not a hang (no timing asserted)
        guest.sendall(_reply([b"0", b"0", b"late"]))  # the late answer must not be taken
        with pytest.raises(AgentLost, match="out of reach"):
            agent.call("ping")


def test_an_answer_split_across_the_deadline_still_counts_whole() -> None:
    host, guest = socket.socketpair()
    with host, guest:
        agent = Agent(host)
        answer = _reply([b"0", b"0", b"hello"])
        guest.sendall(answer[:5])
        guest.sendall(answer[5:])
        assert agent.sh("echo hello", timeout=5) == (0, "hello")


def test_a_closed_channel_is_lost_not_an_errno() -> None:
    host, guest = socket.socketpair()
    with host:
        guest.close()
        agent = Agent(host)
        with pytest.raises(AgentLost) as caught:
            agent.call("ping", timeout=5)
        assert not isinstance(caught.value, OSError)  # no guest system call answered it
