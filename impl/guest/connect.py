"""connect(): a guest's Share on a daemon's vhost-user socket.

The FUSE client brings up the front-end (guest memory, queues, the DAX window when
the back-end offers one) and sends INIT. DAX is used when the back-end both gave a
window (vhost-user SHMEM) and announced FUSE_MAP_ALIGNMENT no coarser than a range,
as the Linux guest requires; otherwise every byte goes by READ/WRITE (virtiofsd).
"""

from __future__ import annotations

import errno

from pagefs.impl.client.fuse_client import DEFAULT_TIMEOUT, FuseClient
from pagefs.impl.guest import safemem
from pagefs.impl.guest.share import FORGET_THRESHOLD, Share
from pagefs.impl.guest.window import DEFAULT_RANGE_SIZE, DaxWindow
from pagefs.impl.transport.sizes import window_size_problem
from pagefs.impl.transport.vhost_user import ProtocolError as VhostUserProtocolError


def connect(
    socket_path: str,
    *,
    window_size: int | None = None,
    range_size: int = DEFAULT_RANGE_SIZE,
    timeout: float | None = DEFAULT_TIMEOUT,
    forget_threshold: int = FORGET_THRESHOLD,
) -> Share:
    """Connect to pagefs-host, virtiofsd or any virtio-fs vhost-user back-end.

    window_size: bytes of DAX window to reserve; None takes the size the back-end
    advertises, 0 asks for none (READ/WRITE only). range_size: the window's
    mapping granule (2 MiB, as Linux). timeout: seconds a request may wait for its
    reply before OSError(ETIMEDOUT); None (the default) waits as long as the connection
    lives. forget_threshold: how many nodeids to remember
    before handing unused ones back (FORGET). Raises OSError or ConnectionError."""
    try:
        client = FuseClient.connect(socket_path, window_size=window_size, timeout=timeout)
    except VhostUserProtocolError as err:
        raise OSError(errno.EPROTO, f"not a vhost-user back-end we can drive: {err}") from err
    on_close = [client.close]
    try:
        window = None
        shm = client.window
        alignment = client.map_alignment
        if shm is not None and window_size is None:
            problem = window_size_problem(shm.size, range_size)
            if problem:  # what the back-end advertised: its fault, not the caller's
                raise OSError(errno.EPROTO, f"back-end advertised a bad window: {problem}")
        if shm is not None and alignment is not None and 1 << alignment <= range_size:
            window = DaxWindow(shm.base, shm.size, client, range_size=range_size)
            safemem.register_window(shm.base, shm.size)
            on_close.insert(0, lambda: safemem.unregister_window(shm.base))
        return Share(
            client, window, max_read=client.max_write, max_write=client.max_write,
            on_close=on_close, forget_threshold=forget_threshold,
        )
    except BaseException:
        for close in on_close:
            close()
        raise
