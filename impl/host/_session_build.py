"""cffi build script for the guest session's tables (session.c: the one home of nodeids
and handles, used by passthrough.py and the fast path) and the C fast path that serves
the frequent FUSE requests from the queue loop without the GIL (fastpath.c), with what it
shares with the transport: the window book (window_book.c: the session holds the guest's)
and the backend channel that SETUPMAPPING and REMOVEMAPPING send SHMEM_MAP/_UNMAP on
(backend_channel.c, with the poller its ack waits spin with: the channel is made by the
transport's module, the same code sends on it here), and the reopen through the
read-only view (reopen.c) read mappings use."""

from pathlib import Path

from cffi import FFI

HERE = Path(__file__).parent
TRANSPORT = HERE.parent / "transport"
HEADERS = ("session.h", "fastpath.h")


def _declarations(header: Path) -> str:
    """The header as cdef takes it: no guards or includes."""
    skip = ("#if", "#endif", "#include", f"#define PAGEFS_{header.stem.upper()}_H")
    return "\n".join(line for line in header.read_text().splitlines()
                     if not line.startswith(skip))


ffibuilder = FFI()
ffibuilder.cdef("\n".join(_declarations(HERE / h) for h in HEADERS))
ffibuilder.set_source(
    "pagefs.impl.host._session",
    "".join(f'#include "{h}"\n' for h in HEADERS),
    sources=[str(HERE / "session.c"), str(HERE / "fastpath.c"), str(HERE / "reopen.c"),
             str(TRANSPORT / "window_book.c"), str(TRANSPORT / "backend_channel.c"),
             str(TRANSPORT / "poller.c")],
    include_dirs=[str(HERE), str(TRANSPORT)],
    extra_compile_args=["-O2", "-std=gnu11", "-Wall", "-Wextra"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
