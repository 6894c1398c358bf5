"""pagefs-host's command line: options, their checks, and what --print-capabilities says."""

from __future__ import annotations

import argparse
import logging
import math
from typing import NoReturn

from pagefs.impl.host.cache_policy import CACHE_POLICIES, DEFAULT
from pagefs.impl.host.sandbox import MODES as SANDBOX_MODES
from pagefs.impl.host.workers import WORKER_MODES
from pagefs.impl.protocol.virtio_fs import TAG_SIZE
from pagefs.impl.transport.backend import DEFAULT_WINDOW_SIZE
from pagefs.impl.transport.sizes import SIZE_SYNTAX, WINDOW_ALIGNMENT, parse_window_size
from pagefs.impl.transport.virtqueue import SPIN_MAX_NS

PROG = "pagefs-host"
# How long a new connection has to finish the vhost-user handshake (until the VMM has taken
# ownership with SET_OWNER, as it does when it connects). The rings have no deadline: a VMM
# sets them up when its guest's driver starts the device, a minute into a slow boot; nor has
# FUSE INIT: a guest mounts when it wants, maybe hours later.
HANDSHAKE_SECONDS = 10.0
# How long a new guest at --max-guests waits for a slot a going guest is letting go: its
# connection closes a moment before its session is released (milliseconds; more on a
# loaded machine).
SLOT_GRACE_SECONDS = 1.0
# Host descriptors one guest may hold by default: FDS_PER_GUEST, far above what a guest's
# dentry cache keeps looked up in ordinary use, but never more than a quarter of the
# daemon's descriptor limit (FDS_SHARE), so one guest at its cap leaves the others room.
FDS_PER_GUEST = 65536
FDS_SHARE = 4
# What the daemon raises its own descriptor limit to when it may (virtiofsd's default).
RLIMIT_NOFILE_WANTED = 1_000_000
EXIT_FAILURE = 1
DISPATCH_MODES = ("fast", "python")
EXIT_USAGE = 2
# What libvirt and QEMU read from --print-capabilities (vhost-user.rst, "Backend program
# conventions"): a virtio-fs back-end taking its options as separate arguments.
CAPABILITIES = {"type": "fs", "features": ["separate-options"]}
LOG_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
              "warning": logging.WARNING, "err": logging.ERROR, "error": logging.ERROR}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, not the usage block
        self.exit(EXIT_USAGE, f"{PROG}: error: {message} (see --help)\n")


def _window_size(text: str) -> int:
    try:
        return parse_window_size(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _spin(text: str) -> int:
    if not text.isdigit() or int(text) > 1_000_000:
        raise argparse.ArgumentTypeError(f"not a number of microseconds up to 1000000: {text!r}")
    return int(text)


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) == 0:
        raise argparse.ArgumentTypeError(f"not a positive number: {text!r}")
    return int(text)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = _Parser(prog=PROG, description="Export a host directory to guests over "
                     "vhost-user (virtio-fs), with DAX mappings of the host's own pages.")
    parser.add_argument("--socket-path", metavar="PATH",
                        help="unix socket to listen on; each guest connects to it")
    parser.add_argument("--fd", type=_descriptor, metavar="FD",
                        help="serve an inherited listening unix socket instead of "
                        "--socket-path (what libvirt passes)")
    parser.add_argument("--shared-dir", metavar="DIR", help="host directory to export")
    parser.add_argument("--cache", choices=sorted(CACHE_POLICIES), default=DEFAULT.name,
                        help="what a guest kernel without DAX may cache (virtiofsd's modes): "
                        "never = direct I/O, no shared mmap; auto = page cache dropped when "
                        "size or mtime changes, attributes re-asked every time; always = "
                        f"page cache and names kept (default {DEFAULT.name}); DAX mappings are "
                        "the host's pages in every mode")
    parser.add_argument("--dispatch", choices=DISPATCH_MODES, default="fast",
                        help="fast: the frequent requests (GETATTR, LOOKUP, FORGET, OPEN, "
                        "RELEASE, FLUSH, READ, WRITE) are answered in C by each queue's "
                        "thread without the GIL, the rest by the Python dispatcher; "
                        "python: every request by the Python dispatcher (default fast)")
    parser.add_argument("--workers", choices=WORKER_MODES, default="process",
                        help="process: each guest is served by a worker process of its own, "
                        "forked from the sandboxed daemon (guests scale across cores; one "
                        "guest's crash drops that guest alone); thread: by threads of the "
                        "daemon's one process (default process)")
    parser.add_argument("--spin-us", type=_spin, default=SPIN_MAX_NS // 1000, metavar="US",
                        help="after each request a queue spins on its ring for the next "
                        "one, at most US microseconds, before it re-arms kicks and sleeps; "
                        "the spin adapts below that to the guest's request rate, falls to "
                        "nothing while the guest idles, and is skipped while every CPU is "
                        f"taken; 0 never spins (default {SPIN_MAX_NS // 1000})")
    parser.add_argument("--read-only", action="store_true",
                        help="refuse every write path with EROFS; donate read-only fds only")
    parser.add_argument("--writable-map-fds", action="store_true",
                        help="donate read-write descriptors for read mappings too; the "
                        "SHMEM_MAP flag still makes the guest's view read-only. QEMU 11.1 "
                        "maps every donated descriptor writable and refuses a read-only one "
                        "(EACCES), so its DAX needs this; a read-only export ignores it")
    parser.add_argument("--max-guests", type=_positive, metavar="N",
                        help="refuse connections beyond N guests at once (default: no limit)")
    parser.add_argument("--fds-per-guest", type=_positive, metavar="N",
                        help="host descriptors one guest may hold (nodeids + handles); "
                        "beyond, that guest's requests get EMFILE and the others are "
                        f"untouched (default {FDS_PER_GUEST}, or 1/{FDS_SHARE} of the "
                        "daemon's descriptor limit if that is less)")
    parser.add_argument("--sandbox", choices=SANDBOX_MODES,
                        help="namespace: a private mount namespace; every fd donated for a "
                        "read mapping, and every fd of a read-only export, comes from a "
                        "read-only mount, so no front-end can reopen it for writing; "
                        "chroot: the daemon's root is the export (for containers where "
                        "mounting is not allowed); none: the export's own mount (default: "
                        "the strongest that works here, in that order)")
    parser.add_argument("--squash-uid", type=_id, metavar="UID",
                        help="single-user export: every request acts on the host as UID, "
                        "whatever guest user sent it (default: each request acts as the "
                        "uid its header names)")
    parser.add_argument("--squash-gid", type=_id, metavar="GID",
                        help="likewise for the group: every request acts as GID")
    parser.add_argument("--window-size", type=_window_size, default=DEFAULT_WINDOW_SIZE,
                        metavar="SIZE", help="DAX window size offered to each guest: "
                        f"{SIZE_SYNTAX}, a multiple of {WINDOW_ALIGNMENT >> 20}M "
                        f"(default {DEFAULT_WINDOW_SIZE >> 20}M)")
    parser.add_argument("--handshake-timeout", type=_seconds, default=HANDSHAKE_SECONDS,
                        metavar="SECONDS", help="close a connection that has not completed "
                        "the vhost-user handshake (SET_OWNER) by then, bytes trickled "
                        "or not, so it holds no --max-guests slot; FUSE INIT has no "
                        f"deadline, a guest mounts when it will (default {HANDSHAKE_SECONDS:g})")
    parser.add_argument("--slot-grace", type=_seconds, default=SLOT_GRACE_SECONDS,
                        metavar="SECONDS", help="how long a connection that finds every "
                        "--max-guests slot taken waits for a going guest to free one "
                        f"before it is refused (default {SLOT_GRACE_SECONDS:g})")
    parser.add_argument("--tag", type=_tag, metavar="TAG",
                        help="the mount tag a guest sees: offers the virtio-fs config space "
                        "(VHOST_USER_PROTOCOL_F_CONFIG), which a VMM's generic vhost-user "
                        "device (QEMU's vhost-user-test-device-pci, virtio-id=26) needs; "
                        "vhost-user-fs-pci takes its tag from its own tag= property")
    parser.add_argument("--log-level", choices=sorted(LOG_LEVELS), default="info",
                        help="least severe messages logged to stderr (default: info)")
    parser.add_argument("--print-capabilities", action="store_true",
                        help="print the vhost-user back-end capabilities (JSON) and exit")
    args = parser.parse_args(argv)
    if not args.print_capabilities:
        if args.socket_path and args.fd is not None:
            parser.error("--socket-path and --fd exclude each other")
        listen = args.socket_path or args.fd is not None
        missing = [opt for opt, given in (("--socket-path", listen),
                                          ("--shared-dir", args.shared_dir)) if not given]
        if missing:
            parser.error(f"{' and '.join(missing)} required")
    return args


def _id(text: str) -> int:
    if not text.isdigit() or int(text) >= 0xFFFF_FFFF:
        raise argparse.ArgumentTypeError(f"not a user or group id: {text!r}")
    return int(text)


def _seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise argparse.ArgumentTypeError(f"not a positive number of seconds: {text!r}")
    return seconds


def _tag(text: str) -> str:
    try:
        raw = text.encode()
    except UnicodeEncodeError:
        raw = b""
    if not 0 < len(raw) <= TAG_SIZE or b"\0" in raw:
        raise argparse.ArgumentTypeError(f"a tag is 1 to {TAG_SIZE} bytes of UTF-8: {text!r}")
    return text


def _descriptor(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"not a descriptor number: {text!r}")
    return int(text)


def default_fds_per_guest(nofile: int) -> int:
    """The --fds-per-guest cap when none is given, for a daemon allowed `nofile` fds."""
    return max(1, min(FDS_PER_GUEST, nofile // FDS_SHARE))
