"""The pagefs guest driver: a guest's view of an export through the DAX window.

    from pagefs.impl.guest import connect
    with connect("/run/pagefs.sock") as share:
        print(share.listdir())

See docs/ARCHITECTURE.md, "Guest driver".
"""

from pagefs.impl.guest.connect import connect
from pagefs.impl.guest.mapping import Mapping
from pagefs.impl.guest.share import Handle, Share

__all__ = ["Handle", "Mapping", "Share", "connect"]
