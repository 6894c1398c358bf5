"""The request loop: INIT first, then every request on a worker, until the mount goes.

One thread reads /dev/fuse; workers relay, so a slow FSYNC never holds up a stat. The
mount ends when it is unmounted (read(2) then fails with ENODEV) or on `stop()`, which
unmounts: at once when nothing is open, else lazily, and open files then see ENOTCONN
once this process lets go of /dev/fuse.
"""

from __future__ import annotations

import errno
import logging
import queue
import struct
import threading

from pagefs.impl import protocol as p
from pagefs.impl.client.fuse_client import FuseClient
from pagefs.impl.mount.device import FuseDevice
from pagefs.impl.mount.donation import Donations
from pagefs.impl.mount.negotiate import init_reply, kernel_offers_passthrough
from pagefs.impl.mount.options import MountOptions
from pagefs.impl.mount.relay import Relay

log = logging.getLogger("pagefs.mount")

DESTROY_WAIT = 2.0  # seconds the back-end has to acknowledge the end of the session
READ_ROOM = 4096  # headers and names beside the largest WRITE's data


class MountServer:
    """Serves `device` from `client` (both owned: `close()` closes them)."""

    def __init__(self, client: FuseClient, device: FuseDevice, options: MountOptions,
                 workers: int = 8) -> None:
        self.client, self.device, self.options = client, device, options
        self.relay: Relay | None = None
        self.passthrough = False
        # Daemon threads: a worker stuck on a back-end that stopped answering must not keep
        # the process from exiting once the mount is gone.
        self._work: queue.SimpleQueue[tuple[Relay, bytes] | None] = queue.SimpleQueue()
        self._workers = [threading.Thread(target=self._worker, name=f"pagefs-mount-{i}",
                                          daemon=True) for i in range(workers)]
        for worker in self._workers:
            worker.start()
        self._room = client.max_write + READ_ROOM
        self.ready = threading.Event()
        self.done = threading.Event()

    def serve(self) -> None:
        """Runs until the mount is gone; sets `ready` once INIT is answered."""
        try:
            while (raw := self.device.read(max(self._room, 1 << 21))) is not None:
                if self.relay is None:
                    self._init(raw)
                else:
                    self._work.put((self.relay, raw))
        finally:
            self.done.set()

    def _init(self, raw: bytes) -> None:
        request = p.decode_request(raw)
        if request.opcode != p.Opcode.INIT or not isinstance(request.body, p.InitIn):
            self.device.write(p.encode_error(request.unique, errno.EPROTO))  # INIT comes first
            return
        donations = None
        if self.options.passthrough and kernel_offers_passthrough(request.body):
            try:
                donations = Donations(self.client)
            except OSError as e:
                log.info("no passthrough: %s", e.strerror)
        self.passthrough = donations is not None
        reply = init_reply(request.body, self.client.max_write, self.passthrough)
        self.relay = Relay(self.client, self.device, self.options, donations)
        self.device.write(p.encode_reply(request.unique, reply))
        self.ready.set()

    def _worker(self) -> None:
        while (item := self._work.get()) is not None:
            self._one(*item)

    def _one(self, relay: Relay, raw: bytes) -> None:
        try:
            reply = relay.handle(raw)
            if reply is not None:
                self.device.write(reply)
        except Exception:  # a worker must never die silently: the caller would hang
            log.exception("request failed")
            unique = struct.unpack_from("<8xQ", raw)[0] if len(raw) >= 16 else None
            if unique is not None:
                self.device.write(p.encode_error(unique, errno.EIO))

    def stop(self) -> None:
        """Unmounts; `serve` returns once the kernel lets go of the connection."""
        self.device.unmount()

    def close(self) -> None:
        """Ends the session with the back-end (DESTROY, bounded) and lets everything go."""
        for _ in self._workers:
            self._work.put(None)
        if self.relay is not None and self.relay.lost is None and self.client.frontend.alive:
            try:
                self.client.call(p.Opcode.DESTROY, 0, p.EMPTY, timeout=DESTROY_WAIT)
            except (OSError, ConnectionError):
                pass  # gone or slow: closing the connection ends the session all the same
        self.client.close()
        self.device.close()
