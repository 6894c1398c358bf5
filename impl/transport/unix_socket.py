"""Unix-socket facts read from the kernel, without touching the socket."""

from __future__ import annotations

_SO_ACCEPTCON = 1 << 16  # the "Flags" bit of /proc/net/unix for a listening socket


def is_listening(path: str) -> bool:
    """True when some process listens on unix socket `path` (as it was bound).

    Read from /proc/net/unix, not by connecting: a back-end that serves one connection
    (virtiofsd) must not have it taken by a probe."""
    with open("/proc/net/unix") as table:
        next(table)  # the header line
        for line in table:
            fields = line.split()
            if len(fields) >= 8 and fields[7] == path and int(fields[3], 16) & _SO_ACCEPTCON:
                return True
    return False
