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
