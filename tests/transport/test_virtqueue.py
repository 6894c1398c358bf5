"""Split virtqueues: driver and device ends against each other on one block of real shared
memory (the C hot path), under random schedules, through index wrap-around, on a full
queue, and against malformed chains."""

from __future__ import annotations

import struct
from collections import deque

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from pagefs.impl.transport.frontend import REQUEST_QUEUE, VhostUserFrontend
from pagefs.impl.transport.guest_memory import BufferHeap, GuestMemory
from pagefs.impl.transport.virtqueue import (
    DeviceQueue,
    DriverQueue,
    RingLayout,
    VirtqueueError,
    check_queue_size,
)

DESC = struct.Struct("<QIHH")
F_NEXT, F_WRITE, F_INDIRECT = 1, 2, 4


class Pair:
    """Both ends of one queue placed at guest address 0 of `mem`."""

    def __init__(self, mem: GuestMemory, num: int, event_idx: bool) -> None:
        self.mem = mem
        self.layout = RingLayout.for_size(num)
        self.driver = DriverQueue(mem.base, self.layout, event_idx=event_idx)
        self.device = DeviceQueue(
            num=num,
            desc=mem.base + self.layout.desc,
            avail=mem.base + self.layout.avail,
            used=mem.base + self.layout.used,
            regions=[(0, mem.size, mem.base)],
            event_idx=event_idx,
        )
        self.heap = BufferHeap(self.layout.size, mem.size)

    def publish(self, head: int) -> None:
        """Puts `head` on the avail ring by hand (for chains written by hand)."""
        lay = self.layout
        idx = struct.unpack("<H", self.mem.read(lay.avail + 2, 2))[0]
        self.mem.write(lay.avail + 4 + 2 * (idx % lay.num), struct.pack("<H", head))
        self.mem.write(lay.avail + 2, struct.pack("<H", (idx + 1) & 0xFFFF))

    def write_desc(self, index: int, addr: int, length: int, flags: int, nxt: int) -> None:
        self.mem.write(self.layout.desc + 16 * index, DESC.pack(addr, length, flags, nxt))


@pytest.fixture
def mem():
    m = GuestMemory(1 << 20)
    yield m
    m.close()


class QueueMachine(RuleBasedStateMachine):
    """Random interleavings of add / pop / push (out of order) / reap on an 8-entry queue."""

    def __init__(self) -> None:
        super().__init__()
        self.mem = GuestMemory(1 << 20)
        self.pair = Pair(self.mem, 8, event_idx=True)
        self.published: deque[tuple[int, list, list]] = deque()  # (head, readable, writable)
        self.in_device: dict[int, tuple] = {}
        self.completed: dict[int, int] = {}  # head -> written length
        self.bufs: dict[int, list[int]] = {}
        self.serial = 0

    def teardown(self) -> None:
        self.mem.close()

    @rule(n_out=st.integers(1, 4), n_in=st.integers(0, 4), size=st.integers(1, 300))
    def add(self, n_out: int, n_in: int, size: int) -> None:
        free_before = self.pair.driver.num_free
        readable, writable, gpas = [], [], []
        for k in range(n_out + n_in):
            gpa = self.pair.heap.alloc(size)
            gpas.append(gpa)
            (readable if k < n_out else writable).append((gpa, size))
        for gpa, length in readable:
            self.serial += 1
            stamp = self.serial.to_bytes(4, "little") * length
            self.mem.write(gpa, stamp[:length])
        head = self.pair.driver.add(readable, writable)
        if free_before < n_out + n_in:
            assert head is None  # a full queue refuses, and changes nothing
            assert self.pair.driver.num_free == free_before
            for gpa in gpas:
                self.pair.heap.free(gpa)
            return
        assert head is not None and 0 <= head < 8
        assert head not in self.bufs
        self.bufs[head] = gpas
        self.published.append((head, readable, writable))

    @precondition(lambda self: self.published)
    @rule()
    def pop(self) -> None:
        chain = self.pair.device.pop()
        head, readable, writable = self.published.popleft()
        assert chain.head == head
        assert chain.n_out == len(readable)
        assert chain.readable_len == sum(n for _, n in readable)
        assert chain.writable_len == sum(n for _, n in writable)
        assert chain.read() == b"".join(self.mem.read(g, n) for g, n in readable)
        self.in_device[head] = (chain, writable)

    @precondition(lambda self: self.in_device)
    @rule(data=st.data())
    def push(self, data) -> None:
        head = data.draw(st.sampled_from(sorted(self.in_device)))
        chain, writable = self.in_device.pop(head)
        reply = bytes([head + 1]) * data.draw(st.integers(0, chain.writable_len))
        if data.draw(st.booleans()):  # the serving loop's one call, or its three steps
            written, _ = self.pair.device.complete(chain, reply)
        else:
            written = chain.write(reply)
            self.pair.device.push(head, written)
        assert written == len(reply)
        got = b"".join(self.mem.read(g, n) for g, n in writable)[:written]
        assert got == reply
        self.completed[head] = written

    @rule()
    def reap(self) -> None:
        while (used := self.pair.driver.get_used()) is not None:
            head, written = used
            assert self.completed.pop(head) == written
            for gpa in self.bufs.pop(head):
                self.pair.heap.free(gpa)
        assert not self.completed

    @invariant()
    def descriptors_accounted(self) -> None:
        in_flight = len(self.published) + len(self.in_device) + len(self.completed)
        assert len(self.bufs) == in_flight
        used_descs = sum(len(g) for g in self.bufs.values())
        assert self.pair.driver.num_free == 8 - used_descs


TestQueueMachine = QueueMachine.TestCase
TestQueueMachine.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)


@pytest.mark.parametrize("event_idx", [False, True])
def test_indices_wrap_around(mem: GuestMemory, event_idx: bool) -> None:
    """More than 2^16 chains through a 4-entry queue: every u16 index wraps at least once."""
    pair = Pair(mem, 4, event_idx)
    req, rep = pair.heap.alloc(8), pair.heap.alloc(8)
    for i in range(70_000):
        mem.write(req, i.to_bytes(8, "little"))
        head = pair.driver.add([(req, 8)], [(rep, 8)])
        chain = pair.device.pop()
        assert chain.head == head and chain.read() == i.to_bytes(8, "little")
        chain.write((i * 3).to_bytes(8, "little"))
        pair.device.push(chain.head, 8)
        assert pair.driver.get_used() == (head, 8)
        assert mem.read(rep, 8) == (i * 3).to_bytes(8, "little")
    assert pair.driver.avail_idx == 70_000 % 65536
    assert pair.device.last_avail == 70_000 % 65536


def test_full_queue_then_room_again(mem: GuestMemory) -> None:
    pair = Pair(mem, 8, event_idx=False)
    buf = pair.heap.alloc(64)
    heads = [pair.driver.add([(buf, 16)], [(buf + 16, 16)]) for _ in range(4)]
    assert None not in heads and len(set(heads)) == 4
    assert pair.driver.add([(buf, 16)], []) is None  # 8 descriptors, all in flight
    chain = pair.device.pop()
    pair.device.push(chain.head, 0)
    assert pair.driver.get_used() == (heads[0], 0)
    assert pair.driver.add([(buf, 16)], [(buf + 16, 16)]) is not None


def test_longest_chain_uses_every_descriptor(mem: GuestMemory) -> None:
    pair = Pair(mem, 16, event_idx=False)
    buf = pair.heap.alloc(16 * 32)
    readable = [(buf + 32 * k, 32) for k in range(10)]
    writable = [(buf + 32 * k, 32) for k in range(10, 16)]
    for k in range(10):
        mem.write(buf + 32 * k, bytes([k]) * 32)
    head = pair.driver.add(readable, writable)
    assert pair.driver.num_free == 0
    chain = pair.device.pop()
    assert chain.head == head and chain.n_out == 10 and chain.n_all == 16
    assert chain.read() == b"".join(bytes([k]) * 32 for k in range(10))
    assert chain.write(b"\xee" * 1000) == 6 * 32  # only the room the driver offered
    with pytest.raises(ValueError):
        pair.driver.add(readable + writable + [(buf, 1)], [])


def test_event_suppression(mem: GuestMemory) -> None:
    """EVENT_IDX: kick only for the first chain after the device re-armed; interrupt only
    for the first used chain after the driver caught up."""
    pair = Pair(mem, 8, event_idx=True)
    buf = pair.heap.alloc(64)
    assert not pair.device.enable_kicks()  # armed at avail index 0, nothing there
    old = pair.driver.avail_idx
    pair.driver.add([(buf, 8)], [])
    assert pair.driver.kick_needed(old)
    old = pair.driver.avail_idx
    pair.driver.add([(buf, 8)], [])
    assert not pair.driver.kick_needed(old)  # the device has not caught up: no second kick
    assert pair.device.enable_kicks()  # work is waiting: the device must not sleep
    for _ in range(2):
        old_used = pair.device.used_idx
        pair.device.push(pair.device.pop().head, 0)
        needed = pair.device.notify_needed(old_used)
        assert needed == (old_used == 0)  # driver asked for used index 0 only
    assert pair.driver.get_used() is not None and pair.driver.get_used() is not None
    old = pair.driver.avail_idx
    pair.driver.add([(buf, 8)], [])
    pair.device.push(pair.device.pop().head, 0)
    assert pair.device.notify_needed(old)  # the driver re-armed by consuming


@pytest.mark.parametrize("event_idx", [True, False])
def test_complete_writes_pushes_and_says_whether_to_notify(
    mem: GuestMemory, event_idx: bool
) -> None:
    pair = Pair(mem, 8, event_idx=event_idx)
    request, reply = pair.heap.alloc(64), pair.heap.alloc(64)
    for k in range(3):
        pair.driver.add([(request, 8)], [(reply, 16)])
        chain = pair.device.pop()
        old_used = pair.device.used_idx
        written, notify = pair.device.complete(chain, bytes([k]) * 20)
        assert written == 16 and mem.read(reply, 16) == bytes([k]) * 16  # cut to the room
        assert notify and pair.device.notify_needed(old_used)
        assert pair.driver.get_used() == (chain.head, 16)
    for _ in range(2):
        pair.driver.add([(request, 8)], [(reply, 16)])
    first, second = pair.device.pop(), pair.device.pop()
    assert pair.device.complete(first, b"") == (0, True)
    # with EVENT_IDX the driver asked for one interrupt until it reaps; without, for each
    assert pair.device.complete(second, b"") == (0, not event_idx)


def test_flag_suppression(mem: GuestMemory) -> None:
    pair = Pair(mem, 8, event_idx=False)
    buf = pair.heap.alloc(64)
    pair.device.suppress_kicks()
    old = pair.driver.avail_idx
    pair.driver.add([(buf, 8)], [])
    assert not pair.driver.kick_needed(old)
    assert pair.device.enable_kicks()  # the chain added while suppressed is seen
    old = pair.driver.avail_idx
    pair.driver.add([(buf, 8)], [])
    assert pair.driver.kick_needed(old)


def _hand_chain(pair: Pair, descs: list[tuple[int, int, int, int]]) -> None:
    for index, (addr, length, flags, nxt) in enumerate(descs):
        pair.write_desc(index, addr, length, flags, nxt)
    pair.publish(0)


@pytest.mark.parametrize(
    "descs, why",
    [
        ([(4096, 8, F_NEXT, 0)], "loop onto itself"),
        ([(4096, 8, F_NEXT, 1), (4096, 8, F_NEXT, 0)], "two-descriptor loop"),
        ([(4096, 8, F_NEXT, 99)], "next out of range"),
        ([(1 << 40, 8, 0, 0)], "address outside guest memory"),
        ([((1 << 20) - 4, 8, 0, 0)], "buffer crossing the end of guest memory"),
        ([(2**64 - 4, 8, 0, 0)], "address that overflows"),
        ([(4096, 8, F_WRITE | F_NEXT, 1), (4096, 8, 0, 0)], "readable after writable"),
        ([(4096, 16, F_INDIRECT, 0)], "indirect descriptor (not negotiated)"),
    ],
)
def test_malformed_chain_is_refused(mem: GuestMemory, descs, why: str) -> None:
    pair = Pair(mem, 4, event_idx=False)
    _hand_chain(pair, descs)
    with pytest.raises(VirtqueueError):
        pair.device.pop()


def test_out_of_range_head_and_runaway_index_are_refused(mem: GuestMemory) -> None:
    pair = Pair(mem, 4, event_idx=False)
    pair.publish(7)
    with pytest.raises(VirtqueueError):
        pair.device.pop()
    pair = Pair(mem, 4, event_idx=False)
    mem.write(pair.layout.avail + 2, struct.pack("<H", 9))  # 9 new chains in a 4-entry ring
    with pytest.raises(VirtqueueError):
        pair.device.pop()


def test_device_returning_a_head_not_in_flight_is_refused(mem: GuestMemory) -> None:
    pair = Pair(mem, 4, event_idx=False)
    pair.device.push(3, 0)
    with pytest.raises(VirtqueueError):
        pair.driver.get_used()


@given(st.integers(0, 70_000))
def test_queue_sizes_must_be_powers_of_two(num: int) -> None:
    if 1 <= num <= 32768 and num & (num - 1) == 0:
        check_queue_size(num)
    else:
        with pytest.raises(ValueError):
            check_queue_size(num)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    batch=st.lists(
        st.tuples(st.binary(min_size=1, max_size=300), st.integers(0, 400)),
        min_size=1,
        max_size=200,
    ),
    big=st.integers(0, 200_000),
)
def test_random_chains_against_a_device_in_another_process(echo_frontend, batch, big) -> None:
    """Batches of chains of random sizes and reply room, all in flight at once, against
    the device end running in its own process: every reply is the device's bytes, cut to
    the room the driver offered, and comes back to the chain that asked."""
    requests = [*batch, (b"B" * big or b"b", big + 16)]
    futures = [echo_frontend.submit(REQUEST_QUEUE, data, room) for data, room in requests]
    for (data, room), future in zip(requests, futures, strict=True):
        assert future.result(30) == (b"echo:" + data)[:room]


@pytest.fixture
def echo_frontend(process_backend, sock_path: str):
    with VhostUserFrontend.connect(sock_path, queue_size=64) as fe:
        yield fe
