"""vhost-user back-end (the daemon's end of one guest connection).

`VhostUserBackend(sock).serve(handle)` answers the front-end's set-up messages, maps the
guest memory it is given, and runs one thread per started queue: pop a chain, pass its
device-readable bytes to `handle`, write the returned bytes into the device-writable part,
push it used, notify. It knows nothing of FUSE. `shmem_map` / `shmem_unmap` send
VHOST_USER_BACKEND_SHMEM_MAP/_UNMAP on the backend channel and wait for the REPLY_ACK.
Given the device's config space (`config=`), it offers VHOST_USER_PROTOCOL_F_CONFIG and
answers GET_CONFIG from it, for a VMM's generic vhost-user device that forwards config
reads; SET_CONFIG is refused (the space is read-only to the driver).

A malformed message or descriptor chain drops the connection; nothing escapes `serve`,
which closes every fd it was handed before returning.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import socket
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from pagefs.impl.machine import PAGE_SIZE
from pagefs.impl.transport import mapping, procfd
from pagefs.impl.transport._vring import ffi, lib
from pagefs.impl.transport.ratelog import RateLog
from pagefs.impl.transport.vhost_user import (
    CONFIG_HEAD,
    MAX_MEM_REGIONS,
    MEM_REGION,
    MEM_TABLE_HEAD,
    PROTOCOL_FEATURES,
    SHMEM_CONFIG,
    SHMEM_MAX_REGIONS,
    U64,
    VHOST_USER_F_PROTOCOL_FEATURES,
    VIRTIO_F_VERSION_1,
    VIRTIO_FEATURES,
    VIRTIO_RING_F_EVENT_IDX,
    VRING_ADDR,
    VRING_IDX_MASK,
    VRING_NOFD,
    VRING_STATE,
    Channel,
    Message,
    ProtocolError,
    ProtocolFeature,
    Request,
    Stopped,
    Waiter,
    bit,
)
from pagefs.impl.transport.virtqueue import (
    SPIN_MAX_NS,
    Chain,
    DeviceLoop,
    DeviceQueue,
    RingLayout,
    VirtqueueError,
    check_queue_size,
    poller_figures,
)

log = logging.getLogger(__name__)
# What the peer causes, request after request, is logged once per kind per interval.
peer_log = RateLog(log)

Handler = Callable[[bytes], "bytes | None"]
# A C serve function (`vq_serve_fn`, device_loop.h) and its context, as addresses: the
# chains it takes are answered without the GIL, the others go to the Handler.
FastServe = tuple[int, int]

DEFAULT_WINDOW_SIZE = 1 << 30
BACKEND_REPLY_TIMEOUT = 10.0
MESSAGE_TIMEOUT = 10.0
# Far above any FUSE request (a WRITE carries at most max_write, 1 MiB here), far below
# what a chain of descriptors each spanning guest memory would make the daemon allocate.
MAX_REQUEST_BYTES = 16 << 20
SUPPORTED_FEATURES = VIRTIO_FEATURES
SUPPORTED_PROTOCOL_FEATURES = PROTOCOL_FEATURES | bit(ProtocolFeature.SHMEM)


@dataclass
class _Region:
    gpa: int
    size: int
    qva: int
    map_base: int
    map_len: int
    hva: int
    file: tuple[int, int] = (0, 0)  # (st_dev, st_ino) of the memfd behind it

    def layout(self) -> tuple[int, int, int, int, tuple[int, int]]:
        return (self.gpa, self.size, self.qva, self.hva - self.map_base, self.file)


class _Vring:
    """What the front-end told us about one queue, and its serving thread when started."""

    def __init__(self) -> None:
        self.num = 0
        self.base = 0
        self.addr: tuple[int, int, int] | None = None  # desc, used, avail (front-end addresses)
        self.kick_fd = -1
        self.call_fd = -1
        self.err_fd = -1
        self.enabled = False
        self.stop_fd = -1
        self.thread: threading.Thread | None = None
        self.device: DeviceQueue | None = None
        self.stats: dict[str, int] = {}  # the queue loop's counters when it last stopped


class BackendChannel:
    """The back-end's end of the backend channel (C, backend_channel.c): this object and
    the host's C fast path both send SHMEM_MAP/_UNMAP on it, one exchange at a time. It
    also keeps the files ever donated, which a VMM whose window mappings are guest RAM to
    it (QEMU 11.1) lists in SET_MEM_TABLE."""

    def __init__(self, timeout: float = BACKEND_REPLY_TIMEOUT,
                 spin_max_ns: int = SPIN_MAX_NS) -> None:
        """`timeout`: how long an ack may take; `spin_max_ns`: the ceiling of the adaptive
        spin on the socket before an ack wait sleeps (0: it never spins)."""
        chan = lib.vu_chan_new(int(timeout * 1000), spin_max_ns)
        if chan == ffi.NULL:
            raise MemoryError("backend channel")
        self._chan = ffi.gc(chan, lib.vu_chan_free)

    @property
    def address(self) -> int:
        """struct vu_backend_chan *, for the host's C fast path; valid while this lives."""
        return int(ffi.cast("uintptr_t", self._chan))

    def attach(self, fd: int) -> None:
        """The channel's socket from now on (owned; the old one closed; -1: none)."""
        lib.vu_chan_set(self._chan, fd)

    def negotiated(self, shmem: bool) -> None:
        """Whether the front-end took SHMEM: without it every request is EOPNOTSUPP."""
        lib.vu_chan_set_shmem(self._chan, int(shmem))

    def shutdown(self) -> None:
        """Wakes a thread waiting for an ack, from any thread."""
        lib.vu_chan_shutdown(self._chan)

    def fileno(self) -> int:
        return int(lib.vu_chan_fd(self._chan))

    def poll_stats(self) -> dict[str, int]:
        """The ack waits' poller (DeviceLoop.stats's figures)."""
        return poller_figures(lib.vu_chan_poller(self._chan))

    def donated(self, key: tuple[int, int]) -> bool:
        """Whether SHMEM_MAP ever donated the file (st_dev, st_ino) here."""
        return bool(lib.vu_chan_donated(self._chan, key[0], key[1]))

    def shmem_map(
        self, fd: int, fd_offset: int, shm_offset: int, length: int, writable: bool
    ) -> None:
        """Asks the front-end to map fd into its DAX window; raises OSError on refusal."""
        _raise_for(lib.vu_shmem_map(self._chan, fd, fd_offset, shm_offset, length,
                                    int(writable)), "SHMEM_MAP")

    def shmem_unmap(self, ranges: list[tuple[int, int]]) -> None:
        """Asks the front-end to put its inaccessible reservation back over each
        (shm_offset, length) range: one SHMEM_UNMAP each, pipelined (every request sent
        before the acks are read). Every range is asked for whatever the answers; raises
        OSError for the first range the front-end refused or when the exchange failed."""
        if not ranges:
            return
        flat = ffi.new("uint64_t[]", [v for r in ranges for v in r])
        status = ffi.new("int[]", len(ranges))
        failed = lib.vu_shmem_unmap(self._chan, flat, len(ranges), status)
        _raise_for(failed or next((s for s in status if s), 0), "SHMEM_UNMAP")


class VhostUserBackend:
    """Serves one front-end connected on `sock`: call `serve` once; it owns the socket and
    every fd it receives, and closes them all before it returns."""

    def __init__(
        self,
        sock: socket.socket,
        *,
        num_request_queues: int = 1,
        window_size: int = DEFAULT_WINDOW_SIZE,
        config: bytes = b"",
        handshake_timeout: float | None = None,
        spin_max_ns: int = SPIN_MAX_NS,
    ) -> None:
        self._chan = Channel(sock)
        # the longest a queue spins for the next request before sleeping (0: never spins)
        self._spin_max_ns = spin_max_ns
        self._fast: FastServe | None = None
        self._handshake_timeout = handshake_timeout
        # True once serve() dropped the connection at the handshake deadline
        self.expired = False
        # The handshake is done, for good: the front-end took ownership (SET_OWNER) or
        # started a queue. A VMM sends SET_OWNER when it connects, but starts the queues
        # only when the guest's driver brings the device up, which may be a minute into a
        # guest's boot (or never, for a guest that does not load the driver).
        self.ready = False
        self._config = config
        self._offered_protocol_features = SUPPORTED_PROTOCOL_FEATURES | (
            bit(ProtocolFeature.CONFIG) if config else 0
        )
        self._num_queues = 1 + num_request_queues  # hiprio + request queues
        self._window_size = window_size
        self._features = 0
        self._protocol_features = 0
        self._regions: list[_Region] = []
        self._vrings = [_Vring() for _ in range(self._num_queues)]
        self.backend = BackendChannel(spin_max_ns=spin_max_ns)
        self._stopping = False
        self._wake_fd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        self._wake_lock = threading.Lock()
        self._broken: str | None = None
        self._handler: Handler | None = None

    # ---- public ------------------------------------------------------------------

    def serve(self, handler: Handler, fast: FastServe | None = None) -> None:
        """Serves until the front-end disconnects or `stop()`; then releases everything.
        Chains `fast` takes are answered by it in C; every other goes to `handler`.

        Until the front-end has taken ownership (SET_OWNER, what a VMM sends as it
        connects) or started a queue, the whole exchange must be done by
        `handshake_timeout`, an absolute deadline that holds within messages too.
        Afterwards no deadline holds between messages (a guest starts the device when
        its driver loads and mounts hours later, maybe) and each message must arrive
        whole within MESSAGE_TIMEOUT of its first byte. `stop()` ends every wait."""
        self._handler = handler
        self._fast = fast
        waiting = Waiter(self._chan.sock, None, self._wake_fd)
        started = time.monotonic()
        try:
            while not self._stopping and self._broken is None:
                handshake = (None if self.ready or self._handshake_timeout is None
                             else started + self._handshake_timeout)
                try:
                    waiting.until(handshake)
                    deadline = time.monotonic() + MESSAGE_TIMEOUT
                    msg = self._chan.recv(deadline=min(deadline, handshake or deadline),
                                          wake_fd=self._wake_fd)
                except Stopped:
                    break
                except TimeoutError:
                    if handshake is not None and time.monotonic() >= handshake:
                        self.expired = True
                        self._break(f"vhost-user handshake not done within "
                                    f"{self._handshake_timeout:g} s")
                    else:
                        self._break(f"vhost-user message not whole within {MESSAGE_TIMEOUT:g} s")
                    break
                except (ProtocolError, OSError) as e:
                    self._break(f"bad vhost-user message: {e}")
                    break
                if msg is None:
                    break
                try:
                    self._dispatch(msg)
                except Exception as e:  # whatever the peer sent, serve() only returns
                    self._break(f"vhost-user request {msg.request} refused: {e!r}")
                finally:
                    msg.close_fds()
        finally:
            self._teardown()

    def stop(self) -> None:
        """Makes `serve` return soon, from any thread: requests being handled are finished
        and answered, then the queues stop and the connection closes."""
        self._stopping = True
        with self._wake_lock:
            if self._wake_fd >= 0:
                os.eventfd_write(self._wake_fd, 1)

    @property
    def broken(self) -> str | None:
        """Why the connection was dropped, if it was dropped for a protocol violation."""
        return self._broken

    def queue_stats(self, index: int) -> dict[str, int]:
        """Queue `index`'s loop counters (DeviceLoop.stats) as of when it last stopped;
        empty before."""
        return dict(self._vrings[index].stats)

    @property
    def backend_channel(self) -> int:
        """The backend channel's address (struct vu_backend_chan *), for the host's C
        fast path; valid while this back-end lives."""
        return self.backend.address

    def shmem_map(
        self, fd: int, fd_offset: int, shm_offset: int, length: int, writable: bool
    ) -> None:
        """Asks the front-end to map fd into its DAX window; raises OSError on refusal."""
        self.backend.shmem_map(fd, fd_offset, shm_offset, length, writable)

    def shmem_unmap(self, ranges: list[tuple[int, int]]) -> None:
        """BackendChannel.shmem_unmap: each range asked for, pipelined."""
        self.backend.shmem_unmap(ranges)

    # ---- main-socket messages ----------------------------------------------------

    def _dispatch(self, msg: Message) -> None:
        if msg.is_reply:
            raise ProtocolError("unsolicited reply")
        try:
            name = Request(msg.request).name
        except ValueError:
            raise ProtocolError(f"unknown request {msg.request}") from None
        method = getattr(self, "_on_" + name.lower(), None)
        if method is None:
            raise ProtocolError(f"unsupported request {name}")
        reply = method(msg)
        if reply is not None:
            self._chan.reply(msg, reply)
        elif msg.need_reply and self._protocol_features & bit(ProtocolFeature.REPLY_ACK):
            self._chan.reply(msg, U64.pack(0))

    def _on_get_features(self, msg: Message) -> bytes:
        return U64.pack(SUPPORTED_FEATURES)

    def _on_set_features(self, msg: Message) -> None:
        (features,) = msg.unpack(U64)
        if features & ~SUPPORTED_FEATURES or not features & bit(VIRTIO_F_VERSION_1):
            raise ProtocolError(f"features {features:#x} not offered or VERSION_1 missing")
        self._features = features

    def _on_get_protocol_features(self, msg: Message) -> bytes:
        return U64.pack(self._offered_protocol_features)

    def _on_set_protocol_features(self, msg: Message) -> None:
        (features,) = msg.unpack(U64)
        if features & ~self._offered_protocol_features:
            raise ProtocolError(f"protocol features {features:#x} not offered")
        self._protocol_features = features
        self.backend.negotiated(bool(features & bit(ProtocolFeature.SHMEM)))

    def _on_set_owner(self, msg: Message) -> None:
        self.ready = True

    def _on_reset_owner(self, msg: Message) -> None:
        self._stop_all_queues()

    def _on_get_queue_num(self, msg: Message) -> bytes:
        return U64.pack(self._num_queues)

    def _on_get_shmem_config(self, msg: Message) -> bytes:
        sizes = [0] * SHMEM_MAX_REGIONS
        sizes[0] = self._window_size
        return SHMEM_CONFIG.pack(1 if self._window_size else 0, 0, *sizes)

    def _on_get_config(self, msg: Message) -> bytes:
        offset, size, flags = msg.unpack(CONFIG_HEAD)
        if size == 0 or offset + size > len(self._config):
            log.debug("GET_CONFIG of %d bytes at %d: outside the %d-byte config space",
                      size, offset, len(self._config))
            return b""  # the protocol's error answer
        return CONFIG_HEAD.pack(offset, size, flags) + self._config[offset : offset + size]

    def _on_set_config(self, msg: Message) -> bytes | None:
        """The virtio-fs config space is read-only to the driver: refused, connection kept."""
        msg.unpack(CONFIG_HEAD)
        log.debug("SET_CONFIG refused: the device config space is read-only")
        if msg.need_reply and self._protocol_features & bit(ProtocolFeature.REPLY_ACK):
            return U64.pack(errno.EPERM)
        return None

    def _on_set_backend_req_fd(self, msg: Message) -> None:
        fd = msg.take_fd()
        if not stat.S_ISSOCK(os.fstat(fd).st_mode):
            os.close(fd)
            raise ProtocolError("backend channel fd is not a socket")
        self.backend.attach(fd)

    def _on_set_mem_table(self, msg: Message) -> None:
        nregions, _ = msg.unpack(MEM_TABLE_HEAD)
        if not 0 < nregions <= MAX_MEM_REGIONS or len(msg.fds) != nregions:
            raise ProtocolError(f"mem table of {nregions} regions with {len(msg.fds)} fds")
        if len(msg.payload) < MEM_TABLE_HEAD.size + nregions * MEM_REGION.size:
            raise ProtocolError("mem table payload too short")
        table = []
        for k in range(nregions):
            gpa, size, qva, offset = MEM_REGION.unpack_from(
                msg.payload, MEM_TABLE_HEAD.size + k * MEM_REGION.size
            )
            if size == 0 or offset % PAGE_SIZE:
                raise ProtocolError(f"memory region {k}: size {size}, mmap_offset {offset}")
            st = os.fstat(msg.fds[k])
            if self.backend.donated((st.st_dev, st.st_ino)):
                # A host file this back-end put in the window, echoed back as guest RAM:
                # not mapped here (a host truncation would SIGBUS the daemon); a descriptor
                # pointing into it is outside guest memory, an error for that request.
                log.debug("memory region %d at %#x is a donated file: not mapped", k, gpa)
                continue
            table.append((gpa, size, qva, offset, (st.st_dev, st.st_ino), msg.fds[k]))
        if [t[:5] for t in table] == [r.layout() for r in self._regions]:
            # Only donated files came or went (the VMM's echo of SHMEM_MAP/UNMAP): the rings'
            # memory is unchanged, and stopping the queues here would deadlock, since a
            # queue thread may be waiting for the front-end's answer to that very SHMEM
            # request while the front-end waits for ours to this table.
            return
        self._stop_all_queues()
        self._unmap_regions()
        for gpa, size, qva, offset, key, fd in table:
            _check_guest_memory_fd(fd, size + offset)
            base = mapping.map_shared(fd, size + offset)
            self._regions.append(_Region(gpa, size, qva, base, size + offset, base + offset, key))
        for index in range(self._num_queues):  # those stopped, and those waiting for memory
            self._maybe_start(index)

    def _on_set_vring_num(self, msg: Message) -> None:
        vring = self._stopped_vring(msg)
        num = msg.unpack(VRING_STATE)[1]
        check_queue_size(num)
        vring.num = num

    def _on_set_vring_base(self, msg: Message) -> None:
        self._stopped_vring(msg).base = msg.unpack(VRING_STATE)[1] & 0xFFFF

    def _on_set_vring_addr(self, msg: Message) -> None:
        index, _flags, desc, used, avail, _log = msg.unpack(VRING_ADDR)
        self._stopped_vring(msg, index).addr = (desc, used, avail)

    def _on_get_vring_base(self, msg: Message) -> bytes:
        index, _ = msg.unpack(VRING_STATE)
        vring = self._stopped_vring(msg)
        for name in ("kick_fd", "call_fd", "err_fd"):
            _close_attr(vring, name)
        vring.enabled = False
        return VRING_STATE.pack(index, vring.base)

    def _on_set_vring_kick(self, msg: Message) -> None:
        self._set_vring_fd(msg, "kick_fd")
        vring = self._vrings[self._file_index(msg)]
        if not self._features & bit(VHOST_USER_F_PROTOCOL_FEATURES):
            vring.enabled = True  # without protocol features a ring starts on its kick fd
        self._maybe_start(self._file_index(msg))

    def _on_set_vring_call(self, msg: Message) -> None:
        self._set_vring_fd(msg, "call_fd")
        self._maybe_start(self._file_index(msg))

    def _on_set_vring_err(self, msg: Message) -> None:
        self._set_vring_fd(msg, "err_fd")
        self._maybe_start(self._file_index(msg))

    def _on_set_vring_enable(self, msg: Message) -> None:
        index, enable = msg.unpack(VRING_STATE)
        vring = self._stopped_vring(msg, index)
        vring.enabled = bool(enable)
        self._maybe_start(index)

    # ---- queues ------------------------------------------------------------------

    def _vring_index(self, msg: Message, index: int | None = None) -> int:
        if index is None:
            index = msg.unpack(VRING_STATE)[0]
        if not 0 <= index < self._num_queues:
            raise ProtocolError(f"queue index {index} outside 0..{self._num_queues - 1}")
        return index

    def _stopped_vring(self, msg: Message, index: int | None = None) -> _Vring:
        index = self._vring_index(msg, index)
        self._stop_queue(index)
        return self._vrings[index]

    def _file_index(self, msg: Message) -> int:
        (value,) = msg.unpack(U64)
        return self._vring_index(msg, value & VRING_IDX_MASK)

    def _set_vring_fd(self, msg: Message, name: str) -> None:
        (value,) = msg.unpack(U64)
        vring = self._stopped_vring(msg, self._file_index(msg))
        _close_attr(vring, name)
        if not value & VRING_NOFD:
            fd = msg.take_fd()
            setattr(vring, name, fd)
            if os.readlink(procfd.path(fd)) != "anon_inode:[eventfd]":
                raise ProtocolError(f"{name} of queue {self._file_index(msg)} is not an eventfd")

    def _maybe_start(self, index: int) -> None:
        vring = self._vrings[index]
        ready = vring.enabled and vring.num and vring.kick_fd >= 0
        if not ready or vring.addr is None or vring.thread is not None or not self._regions:
            return
        layout = RingLayout.for_size(vring.num)
        desc, used, avail = vring.addr
        vring.device = DeviceQueue(
            num=vring.num,
            desc=self._qva_to_hva(desc, layout.avail - layout.desc),
            avail=self._qva_to_hva(avail, layout.used - layout.avail),
            used=self._qva_to_hva(used, layout.size - layout.used),
            regions=[(r.gpa, r.size, r.hva) for r in self._regions],
            event_idx=bool(self._features & bit(VIRTIO_RING_F_EVENT_IDX)),
            last_avail=vring.base,
        )
        vring.stop_fd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        vring.thread = threading.Thread(
            target=self._run_queue, args=(index,), name=f"vhost-user-queue-{index}", daemon=True
        )
        vring.thread.start()
        self.ready = True

    def _qva_to_hva(self, qva: int, length: int) -> int:
        for r in self._regions:
            if r.qva <= qva and qva + length <= r.qva + r.size:
                return r.hva + (qva - r.qva)
        raise ProtocolError(f"ring address {qva:#x}+{length} outside guest memory")

    def _stop_queue(self, index: int) -> bool:
        vring = self._vrings[index]
        if vring.thread is None:
            return False
        os.eventfd_write(vring.stop_fd, 1)
        vring.thread.join()
        vring.thread = None
        _close_attr(vring, "stop_fd")
        if vring.device is not None:
            vring.base = vring.device.last_avail
            vring.device = None
        return True

    def _stop_all_queues(self) -> list[int]:
        return [i for i in range(self._num_queues) if self._stop_queue(i)]

    def _run_queue(self, index: int) -> None:
        vring = self._vrings[index]
        device = vring.device
        assert device is not None, "a queue thread starts once its device queue exists"
        serve, ctx = self._fast if self._fast is not None else (0, 0)
        # The poller drains the kick eventfd until empty: it must not block (the
        # front-end's file description; O_NONBLOCK changes nothing for its writes).
        os.set_blocking(vring.kick_fd, False)
        # Queue 0 (virtio-fs's hiprio queue) never spins: what goes there (FORGET,
        # INTERRUPT) has no reply anybody waits on, and a spinner of its own would take
        # the CPU the request queue's spinner and the guest need.
        spin = 0 if index == 0 else self._spin_max_ns
        loop = DeviceLoop(device, kick_fd=vring.kick_fd, stop_fd=vring.stop_fd,
                          call_fd=vring.call_fd, max_request=MAX_REQUEST_BYTES,
                          serve=serve, ctx=ctx, spin_max_ns=spin)
        try:
            # The loop (C, without the GIL) serves what `fast` takes and hands the rest here.
            while (chain := loop.run()) is not None:
                self._serve_chain(loop, chain)
        except (VirtqueueError, OSError) as e:
            self._break(f"queue {index}: {e}")
        finally:
            loop.close()
            vring.stats = loop.stats()
            log.info("queue %d stopped: %s", index, vring.stats)

    def _serve_chain(self, loop: DeviceLoop, chain: Chain) -> None:
        request = chain.read()
        assert self._handler is not None, "queues start only under serve()"
        try:
            reply = self._handler(request)
        except Exception:
            peer_log.note(logging.ERROR, "request handler failed",
                          "request handler failed; the request is returned with no reply",
                          exc_info=True)
            reply = None
        written = loop.complete(reply or b"")
        if reply and written < len(reply):
            peer_log.note(logging.WARNING, "reply truncated",
                          "reply of %d bytes truncated to the %d the guest offered",
                          len(reply), written)

    # ---- teardown ----------------------------------------------------------------

    def _break(self, why: str) -> None:
        if self._broken is None and not self._stopping:
            self._broken = why
            log.warning("dropping vhost-user connection: %s", why)
        self._chan.shutdown()

    def _unmap_regions(self) -> None:
        while self._regions:
            r = self._regions.pop()
            mapping.unmap(r.map_base, r.map_len)

    def _teardown(self) -> None:
        self._stopping = True
        self.backend.shutdown()  # a handler waiting for a SHMEM ack returns at once
        self._stop_all_queues()
        for vring in self._vrings:
            for name in ("kick_fd", "call_fd", "err_fd"):
                _close_attr(vring, name)
        self._unmap_regions()
        self.backend.attach(-1)
        self._chan.close()
        with self._wake_lock:
            os.close(self._wake_fd)
            self._wake_fd = -1


_CHANNEL_ERRORS = {
    errno.EOPNOTSUPP: "front-end did not negotiate SHMEM (no DAX window)",
    errno.ENOTCONN: "no backend channel",
    errno.ETIMEDOUT: "front-end did not answer in time",
    errno.EPROTO: "front-end's answer is not the REPLY_ACK asked for",
}


def _raise_for(code: int, request: str) -> None:
    """backend_channel.c's answer as Python's: 0, a refusal (> 0), a failure (< 0)."""
    if code > 0:
        raise OSError(code, f"front-end refused {request}")
    if code < 0:
        raise OSError(-code, _CHANNEL_ERRORS.get(-code, os.strerror(-code)))


def _check_guest_memory_fd(fd: int, length: int) -> None:
    """Guest memory must be a memfd sealed against shrinking and at least `length` long:
    otherwise the guest could truncate it under us and our next access to a descriptor
    or ring would be a SIGBUS in the daemon instead of an error for that guest."""
    try:
        seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
    except OSError:
        seals = 0
    if not seals & fcntl.F_SEAL_SHRINK:
        raise ProtocolError("guest memory is not a memfd sealed with F_SEAL_SHRINK")
    if os.fstat(fd).st_size < length:
        raise ProtocolError(f"guest memory fd is shorter than the {length} bytes claimed")


def _close_attr(obj: object, name: str) -> None:
    fd = getattr(obj, name)
    if fd >= 0:
        os.close(fd)
        setattr(obj, name, -1)
