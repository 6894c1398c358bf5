"""pagefs-mount: mount a virtio-fs back-end's export on a local directory.

    pagefs-mount SOCKET MOUNTPOINT [--read-only] [--no-passthrough]
                 [-o allow_other,ro,attr_timeout=S,entry_timeout=S] [-v]

SOCKET is a vhost-user socket of pagefs-host or of a virtiofsd. Runs in the foreground
until the mount is unmounted (umount MOUNTPOINT) or SIGTERM/SIGINT unmounts it. Exit
status 0 after a clean unmount, 1 when the back-end was lost meanwhile, 2 for bad usage
or a mount that could not be made (one line on stderr).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading

from pagefs.impl.client.fuse_client import FuseClient
from pagefs.impl.mount import options as mount_options
from pagefs.impl.mount.device import FuseDevice
from pagefs.impl.mount.server import MountServer

# After an unmount that had to be lazy, how long open files may keep the connection
# before this process lets go (they then see ENOTCONN).
LINGER_SECONDS = 2.0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pagefs-mount", description="Mount a virtio-fs back-end's export with FUSE.")
    parser.add_argument("socket", help="the back-end's vhost-user socket")
    parser.add_argument("mountpoint", help="an existing directory to mount on")
    parser.add_argument("--read-only", action="store_true", help="mount read-only")
    parser.add_argument("--no-passthrough", action="store_true",
                        help="relay READ and WRITE even where host fds could back files")
    parser.add_argument("-o", dest="options", action="append", default=[],
                        metavar="OPT[,OPT...]",
                        help="allow_other, ro, attr_timeout=S, entry_timeout=S (0 default)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log each decision")
    return parser


def _fail(message: str) -> int:
    print(f"pagefs-mount: {message}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="pagefs-mount: %(message)s")
    try:
        opts = mount_options.parse(args.options, read_only=args.read_only,
                                   passthrough=not args.no_passthrough)
    except ValueError as e:
        return _fail(str(e))
    if not os.path.isdir(args.mountpoint):
        return _fail(f"{args.mountpoint}: not a directory")
    try:
        client = FuseClient.connect(args.socket)
    except (OSError, ConnectionError, TimeoutError) as e:
        return _fail(f"cannot reach a back-end at {args.socket}: {e}")
    except Exception as e:  # a peer that is no vhost-user back-end
        return _fail(f"{args.socket} does not speak vhost-user FUSE: {e}")
    try:
        device = FuseDevice(args.mountpoint, read_only=opts.read_only,
                            allow_other=opts.allow_other)
    except OSError as e:
        client.close()
        return _fail(str(e))
    server = MountServer(client, device, opts)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    reader = threading.Thread(target=server.serve, name="pagefs-mount-reader", daemon=True)
    reader.start()
    if server.ready.wait(10):
        logging.getLogger("pagefs.mount").info(
            "%s on %s, passthrough %s", args.socket, device.mountpoint,
            "on" if server.passthrough else "off")
    while not stop.is_set() and not server.done.is_set():
        stop.wait(0.2)
    if not server.done.is_set():
        server.stop()
        server.done.wait(LINGER_SECONDS)
    lost = server.relay.lost if server.relay else None
    if server.done.is_set():
        server.close()
    else:
        # Files still open on a lazily unmounted mount: exiting aborts the connection.
        client.close()
    if lost:
        print(f"pagefs-mount: back-end lost: {lost}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
