"""Caching guests: which named properties a guest kernel that keeps its own page cache
still has, in each of pagefs-host's `--cache` modes.

The operations of this spec describe a guest that asks the host every time, as a guest
mapping files through its DAX window does: a DAX mapping is the host's page cache itself,
so every mode below leaves it exactly as the operations say. A guest without a DAX window
(a Linux guest whose VMM gives none) serves read(), write() and mmap from pages of its
own, and the host's replies say what it may keep: `never` (FOPEN_DIRECT_IO, zero
timeouts), `auto`, the default (page cache dropped at every open and whenever the guest
sees size or mtime change, which it asks at every stat and read(): FUSE_AUTO_INVAL_DATA
and zero timeouts), and `always` (FOPEN_KEEP_CACHE, names and attributes trusted for a
day). The staleness each allows is stated by `kept_without_dax` and `staleness`.
"""

from __future__ import annotations

CACHE_MODES = ("never", "auto", "always")

# The properties about data and names that a page-caching guest can lose; the others
# (RO-EXPORT, ACCESS-MODE, ISOLATION, HANDLE, NODEID, CONFINE, RECLAIM, LIFETIME,
# DURABLE) are the host's checks and hold in every mode.
CACHE_SENSITIVE = ("COH-READ", "COH-WRITE", "COH-PEER", "COH-META", "EOF-FAULT",
                   "NAMESPACE", "SINGLE-COPY")


def kept_without_dax(mode: str) -> frozenset[str]:
    """The cache-sensitive properties a guest kernel without DAX still has in `mode`.

    `never`: every READ and WRITE reaches the host and nothing is trusted past the reply,
    so COH-READ, COH-META and NAMESPACE hold; but Linux refuses MAP_SHARED on a direct-I/O
    file (ENODEV), so the mapping properties cannot be had at all. `auto`: COH-META and
    NAMESPACE hold (attributes and names are asked every time); COH-READ holds for read()
    only when the host change moved size or mtime (see `staleness`); mapping properties do
    not hold. `always`: none is promised.

    pre: mode in CACHE_MODES
    post: __return__ <= frozenset(CACHE_SENSITIVE)
    post: mode != "always" or not __return__
    post: "SINGLE-COPY" not in __return__ and "COH-PEER" not in __return__
    """
    if mode == "never":
        return frozenset({"COH-READ", "COH-META", "NAMESPACE"})
    if mode == "auto":
        return frozenset({"COH-META", "NAMESPACE"})
    return frozenset()


def staleness(mode: str) -> str:
    """What a guest kernel without DAX may see out of date in `mode`, in words.

    pre: mode in CACHE_MODES
    post: bool(__return__)
    """
    if mode == "never":
        return ("nothing: but MAP_SHARED fails with ENODEV, so a program that maps a file "
                "shared cannot run without DAX")
    if mode == "auto":
        return ("a host write that leaves size and mtime as they were (two writes in one "
                "mtime tick) until the next open; host writes under a guest's shared "
                "mapping until the guest next reads, stats or opens the file; the guest's "
                "stores until writeback (msync, fsync, munmap or the periodic flush); a "
                "host truncation under a mapping until that invalidation (then SIGBUS past "
                "end of file); two guests mapping one file each keep their own copy")
    return ("any host change, names included, for up to a day (86400 s): for exports "
            "that only the guest changes")
