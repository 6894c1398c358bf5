"""What a caching guest kernel may keep, per `--cache` mode: the FOPEN_* flags of OPEN and
CREATE replies, the INIT capabilities asked for, and entry and attribute timeouts.

These matter only to a guest that serves files from its own page cache: a Linux guest
without a DAX window. A file mapped through the DAX window is the host's page cache
itself and ignores them all (Linux takes the DAX path before looking at FOPEN_DIRECT_IO),
and pagefs's own front-end caches nothing, so DAX behaviour is the same in every mode.

- `never`: FOPEN_DIRECT_IO, zero timeouts. Every read and write goes to the host, and the
  guest sees every host change at its next call; but Linux refuses MAP_SHARED on a
  direct-I/O file (ENODEV), so without DAX a program that maps a file shared fails.
- `auto` (the default): page cache, zero timeouts, FUSE_AUTO_INVAL_DATA. mmap works. The
  guest re-asks attributes at every stat and every read(), and drops its cached pages of a
  file when it sees the size or mtime changed; pages are also dropped at every open
  (no FOPEN_KEEP_CACHE), so close-to-open is coherent. Staleness allowed: a host change
  that leaves size and mtime as they were (two host writes within one mtime tick) is
  missed until the next open; a guest's shared mapping shows host writes only once the
  guest has invalidated (its next read(), stat or open of the file), and its stores reach
  the host at writeback (msync, fsync, munmap, or the kernel's periodic flush), not at
  once; two guests mapping one file each have their own copy.
- `always`: page cache kept across opens (FOPEN_KEEP_CACHE), entries and attributes
  trusted for a day. For exports only the guest changes: a host change may go unseen for
  up to ENTRY_TIMEOUT_ALWAYS seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

from pagefs.impl.protocol import constants as c

# virtiofsd's choice for cache=always: long enough that a guest never re-asks.
TIMEOUT_ALWAYS = 86400


@dataclass(frozen=True)
class CachePolicy:
    name: str
    open_flags: int  # FOPEN_* of every OPEN and CREATE reply
    init_flags: int  # INIT capabilities asked of the guest (when it offers them)
    entry_timeout: int  # seconds a guest may trust a name's LOOKUP
    attr_timeout: int  # seconds a guest may trust attributes


NEVER = CachePolicy("never", int(c.OpenReplyFlag.DIRECT_IO), 0, 0, 0)
AUTO = CachePolicy("auto", 0, int(c.InitFlag.AUTO_INVAL_DATA), 0, 0)
ALWAYS = CachePolicy("always", int(c.OpenReplyFlag.KEEP_CACHE), 0, TIMEOUT_ALWAYS,
                     TIMEOUT_ALWAYS)
CACHE_POLICIES = {policy.name: policy for policy in (NEVER, AUTO, ALWAYS)}
DEFAULT = AUTO
