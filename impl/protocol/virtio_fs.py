"""virtio-fs device facts (virtio spec, virtio-fs device section; Linux uapi virtio_fs.h)."""

from __future__ import annotations

import errno
from dataclasses import dataclass
from struct import Struct
from typing import Self

from ._wire import Buffer, expect_size, pack
from .constants import Opcode
from .errors import ProtocolError

VIRTIO_ID_FS = 26
# Feature bit: a notification queue follows the hiprio queue.
VIRTIO_FS_F_NOTIFICATION = 0
# Shared-memory region id of the DAX window.
VIRTIO_FS_SHMCAP_ID_CACHE = 0

TAG_SIZE = 36
_CONFIG = Struct(f"<{TAG_SIZE}sII")

# Queue 0 carries only requests that need no reply and must not wait behind others.
HIPRIO_QUEUE = 0
HIPRIO_OPCODES = frozenset({Opcode.FORGET, Opcode.BATCH_FORGET, Opcode.INTERRUPT})
# Present only with VIRTIO_FS_F_NOTIFICATION; the request queues follow it.
NOTIFICATION_QUEUE = 1



def request_queue(index: int, *, notification: bool = False) -> int:
    """The virtqueue index of request queue `index` (0-based)."""
    return index + (2 if notification else 1)


@dataclass(frozen=True, slots=True)
class VirtioFsConfig:
    """struct virtio_fs_config: the mount tag, the number of request queues, notify size."""

    tag: str
    num_request_queues: int = 1
    notify_buf_size: int = 0

    def encode(self) -> bytes:
        raw = self.tag.encode(errors="replace")
        if raw != self.tag.encode(errors="ignore") or not 0 < len(raw) <= TAG_SIZE or b"\0" in raw:
            raise ProtocolError(errno.EINVAL, f"tag {self.tag!r}: 1..{TAG_SIZE} bytes, no NUL")
        return pack(_CONFIG, raw, self.num_request_queues, self.notify_buf_size)

    @classmethod
    def decode(cls, buf: Buffer) -> Self:
        expect_size(buf, _CONFIG.size, "virtio_fs_config")
        raw, queues, notify = _CONFIG.unpack(buf)
        # The tag is NUL-padded, and not NUL-terminated when it fills all 36 bytes.
        tag, _, padding = raw.partition(b"\0")
        if not tag or padding.strip(b"\0"):
            raise ProtocolError(errno.EINVAL, "virtio_fs_config: tag empty or not NUL-padded")
        try:
            text = tag.decode()
        except UnicodeDecodeError:
            raise ProtocolError(errno.EINVAL, "virtio_fs_config: tag is not UTF-8") from None
        if queues < 1:
            raise ProtocolError(errno.EINVAL, "virtio_fs_config: no request queue")
        return cls(text, queues, notify)
