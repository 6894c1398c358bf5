"""cffi build script for the split-virtqueue hot path (vring.c), the adaptive poller both
ends wait with (poller.c), the front-end's request path (driver.c), the back-end's queue
loop (device_loop.c), the DAX window's book (window_book.c), the back-end's end of the
backend channel (backend_channel.c), the front-end's DAX window (shmem_window.c), and the
few mapping calls the transport needs at fixed addresses (Python's mmap module cannot map
MAP_FIXED). Every call runs without the GIL (cffi's API
mode releases it)."""

import sys
from pathlib import Path

from cffi import FFI

if sys.byteorder != "little":
    raise SystemExit("pagefs's virtqueues need a little-endian host (virtio 1.x is little-endian)")

HERE = Path(__file__).parent
HEADERS = ("vring.h", "poller.h", "driver.h", "device_loop.h", "window_book.h",
           "backend_channel.h", "shmem_window.h")


def _declarations(header: Path) -> str:
    """The header as cdef takes it: declarations and integer #defines, no guards or
    includes (so the C and the Python sides read the very same declarations)."""
    skip = ("#if", "#endif", "#include", f"#define PAGEFS_{header.stem.upper()}_H")
    lines = header.read_text().splitlines()
    return "\n".join(line for line in lines if not line.startswith(skip))


ffibuilder = FFI()
ffibuilder.cdef(
    "".join(_declarations(HERE / header) + "\n" for header in HEADERS)
    + """
    #define PROT_NONE ...
    #define PROT_READ ...
    #define PROT_WRITE ...
    #define MAP_SHARED ...
    #define MAP_PRIVATE ...
    #define MAP_FIXED ...
    #define MAP_ANONYMOUS ...
    #define MAP_NORESERVE ...
    void *mmap(void *addr, size_t length, int prot, int flags, int fd, long offset);
    int munmap(void *addr, size_t length);
    """
)
ffibuilder.set_source(
    "pagefs.impl.transport._vring",
    "#include <sys/mman.h>\n" + "".join(f'#include "{header}"\n' for header in HEADERS),
    sources=[str(HERE / f"{Path(header).stem}.c") for header in HEADERS],
    include_dirs=[str(HERE)],
    extra_compile_args=["-O2", "-std=gnu11", "-Wall", "-Wextra"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
