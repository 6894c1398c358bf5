"""Facts of the machine the implementation runs on, each read once, here.

Every layer of impl/ may import this module (it imports nothing of the project): the
page size is what mappings align to on both sides of the window, and the largest file
offset is what off_t holds, whatever the wire's u64 fields could carry.
"""

from __future__ import annotations

import mmap

PAGE_SIZE = mmap.PAGESIZE
PAGE_SHIFT = PAGE_SIZE.bit_length() - 1  # log2: what FUSE's map_alignment carries
MAX_FILE_OFFSET = (1 << 63) - 1  # the largest off_t


def whole_pages(offset: int, length: int) -> bool:
    """A range mmap can place: non-empty, at a non-negative offset, both page multiples.
    (The window's front-end, the host's mapping record and the guest's requests all ask
    this one question of a mapping range.)"""
    return length > 0 and offset >= 0 and offset % PAGE_SIZE == 0 and length % PAGE_SIZE == 0
