"""A front-end in a process of its own, for the transport tests: connects to SOCKET_PATH,
gets one echo through, prints "up", then waits to be killed.

    python sleeping_guest.py SOCKET_PATH
"""

import sys
import time

from pagefs.impl.transport.frontend import REQUEST_QUEUE, VhostUserFrontend

fe = VhostUserFrontend.connect(sys.argv[1])
assert fe.submit(REQUEST_QUEUE, b"hi", 64).result(10) == b"echo:hi"
print("up", flush=True)
time.sleep(600)
