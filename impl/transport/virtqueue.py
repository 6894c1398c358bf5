"""Split virtqueues: thin Python handles over the C hot path in vring.c.

A queue's three areas (descriptor table, avail ring, used ring) live in guest memory
shared by the two processes. `DriverQueue` is the guest (front-end) end: it adds chains
and reaps used ones. `DeviceQueue` is the host (back-end) end: it pops chains, translating
guest-physical addresses through the regions it mapped, and pushes them used. Neither is
thread-safe; each end serialises its own calls.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import Any

from pagefs.impl.transport._vring import ffi, lib

MAX_QUEUE_SIZE = 32768  # virtio: a split queue has at most 2^15 entries


class VirtqueueError(Exception):
    """The other end published something malformed; the queue cannot be trusted again."""


@dataclass(frozen=True)
class RingLayout:
    """Offsets of one queue's areas inside a block of guest memory."""

    num: int
    desc: int
    avail: int
    used: int
    size: int

    @classmethod
    def for_size(cls, num: int) -> RingLayout:
        check_queue_size(num)
        desc = 0
        avail = desc + lib.vring_desc_bytes(num)
        # +2 for used_event; the used ring needs 4-byte alignment (we give it a page).
        used = _align(avail + lib.vring_avail_bytes(num) + 2, 4096)
        size = _align(used + lib.vring_used_bytes(num) + 2, 4096)
        return cls(num, desc, avail, used, size)


def check_queue_size(num: int) -> None:
    if not (1 <= num <= MAX_QUEUE_SIZE) or num & (num - 1):
        raise ValueError(f"queue size {num} is not a power of two in 1..{MAX_QUEUE_SIZE}")


def _align(n: int, a: int) -> int:
    return (n + a - 1) // a * a


class DriverQueue:
    """The driver end of one queue whose areas start at host address `base`."""

    def __init__(self, base: int, layout: RingLayout, *, event_idx: bool) -> None:
        self.layout = layout
        self._next = ffi.new("uint16_t[]", layout.num)
        self._chain_len = ffi.new("uint16_t[]", layout.num)
        vq = ffi.new("struct vq_driver *")
        vq.desc = ffi.cast("struct vring_desc *", base + layout.desc)
        vq.avail = ffi.cast("uint16_t *", base + layout.avail)
        vq.used = ffi.cast("uint8_t *", base + layout.used)
        vq.next = self._next
        vq.chain_len = self._chain_len
        vq.num = layout.num
        vq.event_idx = int(event_idx)
        lib.vq_driver_init(vq)
        self._vq = vq
        self._addr = ffi.new("uint64_t[]", layout.num)
        self._len = ffi.new("uint32_t[]", layout.num)
        self._written = ffi.new("uint32_t *")

    @property
    def num_free(self) -> int:
        return self._vq.num_free

    @property
    def avail_idx(self) -> int:
        return self._vq.avail_idx

    def add(self, readable: list[tuple[int, int]], writable: list[tuple[int, int]]) -> int | None:
        """Publishes a chain of (guest address, length) buffers; None when the queue is full."""
        bufs = readable + writable
        if not bufs or len(bufs) > self.layout.num:
            raise ValueError(f"a chain has 1..{self.layout.num} buffers, not {len(bufs)}")
        for k, (addr, length) in enumerate(bufs):
            self._addr[k] = addr
            self._len[k] = length
        head = lib.vq_driver_add(self._vq, self._addr, self._len, len(readable), len(writable))
        return None if head == -errno.ENOSPC else head

    def kick_needed(self, old_avail: int) -> bool:
        return bool(lib.vq_driver_kick_needed(self._vq, old_avail & 0xFFFF))

    def get_used(self) -> tuple[int, int] | None:
        """One used chain as (head, bytes written by the device), or None."""
        head = lib.vq_driver_get_used(self._vq, self._written)
        if head == -errno.EAGAIN:
            return None
        if head < 0:
            raise VirtqueueError("device returned a descriptor that is not in flight")
        return head, self._written[0]

    def has_used(self) -> bool:
        return bool(lib.vq_driver_has_used(self._vq))


@dataclass(slots=True)
class Chain:
    """A popped chain: `head`, its readable bytes and room for the reply."""

    head: int
    segs: Any  # cdata struct vq_seg[], valid until pushed
    n_out: int
    n_all: int
    readable_len: int
    writable_len: int

    def read(self) -> bytes:
        if self.n_out == 1:  # the usual request: one buffer, copied once
            return ffi.unpack(ffi.cast("char *", self.segs[0].ptr), self.readable_len)
        buf = ffi.new("uint8_t[]", self.readable_len)
        got = lib.vq_gather(self.segs, self.n_out, buf, self.readable_len)
        return ffi.buffer(buf, got)[:]

    def write(self, data: bytes) -> int:
        """Copies data into the writable part; returns how much fitted."""
        src = ffi.from_buffer(data)
        return lib.vq_scatter(self.segs + self.n_out, self.n_all - self.n_out, src, len(data))


class DeviceQueue:
    """The device end of one queue: areas at host addresses, buffers found by `regions`.

    `regions` is a list of (guest physical address, size, host address) for guest memory
    mapped into this process.
    """

    def __init__(
        self,
        *,
        num: int,
        desc: int,
        avail: int,
        used: int,
        regions: list[tuple[int, int, int]],
        event_idx: bool,
        last_avail: int = 0,
    ) -> None:
        check_queue_size(num)
        self._regions = ffi.new("struct vq_region[]", max(1, len(regions)))
        for k, (gpa, size, hva) in enumerate(regions):
            self._regions[k].gpa = gpa
            self._regions[k].size = size
            self._regions[k].hva = ffi.cast("uint8_t *", hva)
        vq = ffi.new("struct vq_device *")
        vq.desc = ffi.cast("struct vring_desc *", desc)
        vq.avail = ffi.cast("uint16_t *", avail)
        vq.used = ffi.cast("uint8_t *", used)
        vq.regions = self._regions
        vq.nregions = len(regions)
        vq.num = num
        vq.last_avail = last_avail & 0xFFFF
        vq.event_idx = int(event_idx)
        lib.vq_device_init(vq)
        self._vq = vq
        self.num = num
        self._n_out = ffi.new("unsigned *")
        self._head = ffi.new("uint16_t *")
        self._bytes = ffi.new("uint64_t[2]")  # readable, writable
        self._segs = ffi.new("struct vq_seg[]", num)
        self._written = ffi.new("uint32_t *")

    @property
    def last_avail(self) -> int:
        return self._vq.last_avail

    @property
    def used_idx(self) -> int:
        return self._vq.used_idx

    def pop(self) -> Chain | None:
        segs = self._segs
        n = lib.vq_device_pop(
            self._vq, segs, self.num, self._n_out, self._head, self._bytes, self._bytes + 1
        )
        if n == 0:
            return None  # the common case when draining: no allocation spent on it
        if n < 0:
            raise VirtqueueError(f"malformed descriptor chain (errno {-n})")
        self._segs = ffi.new("struct vq_seg[]", self.num)  # the chain keeps the filled one
        return Chain(self._head[0], segs, self._n_out[0], n, self._bytes[0], self._bytes[1])

    def complete(self, chain: Chain, reply: bytes) -> tuple[int, bool]:
        """chain.write(reply), push it used, notify_needed: the device's whole answer to a
        chain in one call. Returns the bytes that fitted and whether to notify the driver."""
        notify = lib.vq_device_complete(
            self._vq, chain.segs, chain.n_out, chain.n_all, chain.head, reply, len(reply),
            self._written,
        )  # fmt: skip
        return self._written[0], bool(notify)

    def push(self, head: int, written: int) -> None:
        lib.vq_device_push(self._vq, head, written)

    def notify_needed(self, old_used: int) -> bool:
        return bool(lib.vq_device_notify_needed(self._vq, old_used & 0xFFFF))

    def suppress_kicks(self) -> None:
        lib.vq_device_suppress_kicks(self._vq)

    def enable_kicks(self) -> bool:
        """Re-arms kicks; True if chains arrived meanwhile (process them before sleeping)."""
        return bool(lib.vq_device_enable_kicks(self._vq))


# Spin-then-sleep (poller.h), at most this long: the device's ceiling has to cover the
# driver's think time between requests (a Python guest's 10-40 us per request), or the
# device always sleeps and every request pays a wake-up (tens of us on a VM). The budget
# below it adapts, to nothing when the guest idles or no CPU is free (poller.h).
SPIN_MAX_NS = 200_000


class DeviceLoop:
    """The device end's queue loop in C (device_loop.c), run without the GIL.

    `run()` pops and answers chains until one is not taken by `serve` (a C function of
    type `vq_serve_fn` at address `serve`, called with `ctx`; 0 takes none), which it
    returns for the caller to answer with `complete`; None when `stop_fd` was written.
    Between requests it spins for an adaptive budget (at most `spin_max_ns`; 0 never
    spins), then re-arms kicks and sleeps on `kick_fd`.
    """

    def __init__(self, device: DeviceQueue, *, kick_fd: int, stop_fd: int, call_fd: int,
                 max_request: int, serve: int = 0, ctx: int = 0,
                 spin_max_ns: int = SPIN_MAX_NS) -> None:
        self._device = device  # keeps the queue's C structures alive
        self._segs = ffi.new("struct vq_seg[]", device.num)
        loop = ffi.new("struct vq_loop *")
        loop.vq = device._vq
        lib.poller_init(ffi.addressof(loop.poller), spin_max_ns)
        loop.kick_fd = kick_fd
        loop.stop_fd = stop_fd
        loop.call_fd = call_fd
        loop.max_request = max_request
        loop.serve = ffi.cast("vq_serve_fn", serve)
        loop.ctx = ffi.cast("void *", ctx)
        loop.chain.segs = self._segs
        loop.chain.max_segs = device.num
        self._loop = loop

    def run(self) -> Chain | None:
        rc = lib.vq_loop_run(self._loop)
        if rc == lib.VQ_LOOP_STOP:
            return None
        if rc == -errno.E2BIG:
            raise VirtqueueError("request exceeds the largest request served")
        if rc < 0:
            raise VirtqueueError(f"malformed descriptor chain or wait failed (errno {-rc})")
        c = self._loop.chain
        return Chain(c.head, c.segs, c.n_out, c.n_all, c.bytes_out, c.bytes_in)

    def complete(self, reply: bytes) -> int:
        """Answers the chain `run` returned (notifying the driver if it asked); returns
        the bytes that fitted."""
        return int(lib.vq_loop_complete(self._loop, reply, len(reply)))

    def close(self) -> None:
        """Closes the fd the loop sleeps in (run() closes it too when it stops)."""
        lib.vq_loop_close(self._loop)

    def stats(self) -> dict[str, int]:
        """Chains served in C and handed back; the poller's budget now, its waits for a
        request, those met spinning, those that slept, those that could not spin for want
        of a free CPU, and the time spent spinning (ns)."""
        loop = self._loop
        return {"served": loop.served, "passed": loop.passed,
                **poller_figures(loop.poller)}


def poller_figures(poller: Any) -> dict[str, int]:
    """A struct poller's budget now, its waits, those met spinning, those that slept,
    those that could not spin for want of a free CPU, and the time spent spinning (ns)."""
    return {"budget_ns": poller.budget_ns, "waits": poller.waits, "spun": poller.spun,
            "slept": poller.slept, "contended": poller.contended, "spin_ns": poller.spin_ns}
