"""The daemon's listening socket: bound only where no live listener is, removed at exit."""

from __future__ import annotations

import errno
import os
import socket
import stat

from pagefs.impl.transport.unix_socket import is_listening

BACKLOG = 16


class SocketInUse(OSError):
    """Another process is listening on the socket path."""


def bind_listener(path: str) -> socket.socket:
    """Listen on `path`, owner-only (0600).

    A socket file that nobody listens on (left by a daemon that was killed) is replaced;
    a live listener is never disturbed (SocketInUse), nor is anything but a socket.
    """
    path = os.path.abspath(path)  # /proc/net/unix names sockets as they were bound
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(mode):
            raise OSError(errno.EEXIST, "exists and is not a socket")
        if is_listening(path):
            raise SocketInUse(errno.EADDRINUSE, "in use by a live listener")
        os.unlink(path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o077)
    try:
        listener.bind(path)
        listener.listen(BACKLOG)
    except BaseException:
        listener.close()
        raise
    finally:
        os.umask(old_umask)
    listener.setblocking(False)
    return listener


def adopt_listener(fd: int) -> socket.socket:
    """Serve a listening unix socket handed down by whoever started us (libvirt's --fd)."""
    try:
        listener = socket.socket(fileno=fd)
    except OSError as err:
        raise OSError(err.errno, f"not an open socket ({err.strerror or err})") from None
    if (listener.family != socket.AF_UNIX or listener.type != socket.SOCK_STREAM
            or not listener.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)):
        listener.detach()  # not ours to close
        raise OSError(errno.EINVAL, "not a listening unix stream socket")
    listener.set_inheritable(False)
    listener.setblocking(False)
    return listener
