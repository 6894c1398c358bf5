"""cffi build script for the guest's fault-contained window copies (safemem.c)."""

from pathlib import Path

from cffi import FFI

HERE = Path(__file__).parent

ffibuilder = FFI()
ffibuilder.cdef(
    """
    int safemem_install(void);
    int safemem_register_window(uintptr_t base, size_t length);
    int safemem_unregister_window(uintptr_t base);
    size_t safemem_read(void *dst, uintptr_t window_src, size_t n);
    size_t safemem_write(uintptr_t window_dst, const void *src, size_t n);
    """
)
ffibuilder.set_source(
    "pagefs.impl.guest._safemem",
    (HERE / "safemem.c").read_text(),
    extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
