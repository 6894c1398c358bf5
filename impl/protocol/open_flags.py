"""What the open(2) flags that OPEN and CREATE carry let a handle do."""

from __future__ import annotations

import os


def readable(flags: int) -> bool:
    """The access mode allows reading: O_RDONLY or O_RDWR."""
    return flags & os.O_ACCMODE in (os.O_RDONLY, os.O_RDWR)


def writable(flags: int) -> bool:
    """The access mode allows writing: O_WRONLY or O_RDWR."""
    return flags & os.O_ACCMODE in (os.O_WRONLY, os.O_RDWR)


class OpenAccess:
    """For a handle class with a `flags` field: what its access mode lets it do."""

    flags: int

    @property
    def readable(self) -> bool:
        return readable(self.flags)

    @property
    def writable(self) -> bool:
        return writable(self.flags)
