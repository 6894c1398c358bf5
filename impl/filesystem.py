"""The filesystem seam's value types: what a filesystem answers, whoever asks.

The host's passthrough filesystem returns them and its dispatcher encodes them; the
conformance Target API (`conformance/target.py`) speaks the same types, so a third-party
target and the host daemon agree without either importing the other. No I/O here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Entry:
    """A LOOKUP-like reply: the guest now holds one more lookup of `nodeid`."""

    nodeid: int
    generation: int
    attr: os.stat_result


@dataclass(frozen=True)
class DirEntry:
    """One READDIR entry; `offset` is the cookie that resumes the listing after it."""

    ino: int
    offset: int
    type: int  # DT_*: stat.S_IFMT(mode) >> 12
    name: bytes


@dataclass(frozen=True)
class MapGrant:
    """A file range the caller may donate to the guest's window; the caller closes `fd`."""

    fd: int
    fd_offset: int
    length: int
    writable: bool
