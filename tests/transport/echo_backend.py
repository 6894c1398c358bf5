"""A vhost-user back-end in a process of its own, for the transport tests.

    python echo_backend.py SOCKET_PATH WINDOW_SIZE

Prints "ready" once listening, serves one connection, exits when it ends. Every request
is answered with b"echo:" + request, except b"map PATH SHM_OFFSET LENGTH rw|ro" and
b"unmap SHM_OFFSET LENGTH", which open PATH and donate its fd to the front-end's window
(SHMEM_MAP / SHMEM_UNMAP on the backend channel, while the request waits) and answer
b"ok" or b"err ERRNO".
"""

import os
import socket
import sys

from pagefs.impl.transport.backend import VhostUserBackend


def answer(backend: VhostUserBackend, request: bytes) -> bytes:
    words = request.split()
    try:
        if words[:1] == [b"map"]:
            path, offset, length, mode = words[1:]
            writable = mode == b"rw"
            fd = os.open(path, os.O_RDWR if writable else os.O_RDONLY)
            try:
                backend.shmem_map(fd, 0, int(offset), int(length), writable)
            finally:
                os.close(fd)
            return b"ok"
        if words[:1] == [b"unmap"]:
            backend.shmem_unmap([(int(words[1]), int(words[2]))])
            return b"ok"
    except OSError as e:
        return b"err %d" % e.errno
    return b"echo:" + request


def main() -> None:
    path, window_size = sys.argv[1], int(sys.argv[2])
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    print("ready", flush=True)
    conn, _ = listener.accept()
    listener.close()
    os.unlink(path)
    backend = VhostUserBackend(conn, window_size=window_size)
    backend.serve(lambda request: answer(backend, request))


if __name__ == "__main__":
    main()
