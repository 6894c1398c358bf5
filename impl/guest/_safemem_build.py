"""cffi build script for the guest's fault-contained window copies (safemem.c) and the
fast read over the window's books (fastread.c, which uses safemem.c's copy)."""

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

    struct safemem_books;
    struct safemem_reader {
        struct safemem_books *books;
        uint64_t nodeid;
        int64_t last_end;
    };
    struct safemem_books *safemem_books_new(uintptr_t base, uint32_t ranges, unsigned shift);
    void safemem_books_free(struct safemem_books *b);
    int safemem_books_map(struct safemem_books *b, uint32_t r, uint64_t owner,
                          uint64_t index);
    int safemem_books_unmap(struct safemem_books *b, uint32_t r);
    uint32_t safemem_books_used(struct safemem_books *b, uint32_t *out, uint32_t max);
    int64_t safemem_pread(struct safemem_reader *rd, char *dst, size_t n, int64_t offset);
    void safemem_books_close(struct safemem_books *b);
    struct safemem_span {
        const struct safemem_books *books;
        uint64_t length;
        uint64_t first_within;
        const uintptr_t *addresses;
        uint32_t count;
        uint32_t users;
    };
    int safemem_span_enter(struct safemem_span *s);
    void safemem_span_leave(struct safemem_span *s);
    void safemem_span_close(struct safemem_span *s);
    int64_t safemem_span_read(struct safemem_span *s, char *dst, size_t n,
                              int64_t position);
    """
)
ffibuilder.set_source(
    "pagefs.impl.guest._safemem",
    "\n".join((HERE / name).read_text() for name in ("safemem.c", "fastread.c")),
    extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
