"""cffi build script for the few Linux calls the os module lacks (openat2, renameat2,
utimensat with UTIME_OMIT, fallocate with a mode, syncfs, prctl's parent-death signal):
direct calls, with none of
ctypes' per-call argument objects on the LOOKUP path."""

from cffi import FFI

ffibuilder = FFI()
ffibuilder.cdef(
    """
    #define AT_FDCWD ...
    #define UTIME_OMIT ...
    struct timespec { long tv_sec; long tv_nsec; ...; };
    int pagefs_openat2(int dirfd, const char *path, uint64_t flags, uint64_t mode,
                       uint64_t resolve);
    int renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath,
                  unsigned int flags);
    int utimensat(int dirfd, const char *path, const struct timespec times[2], int flags);
    int fallocate(int fd, int mode, int64_t offset, int64_t len);
    int syncfs(int fd);
    int pagefs_pdeathsig(int signum);
    """
)
ffibuilder.set_source(
    "pagefs.impl.host._syscalls",
    """
    #ifndef _GNU_SOURCE
    #define _GNU_SOURCE /* fallocate, syncfs */
    #endif
    #include <fcntl.h>
    #include <linux/openat2.h>
    #include <stdint.h>
    #include <stdio.h>
    #include <sys/prctl.h>
    #include <sys/stat.h>
    #include <sys/syscall.h>
    #include <unistd.h>

    /* glibc has no openat2 wrapper: build struct open_how here, one call from Python. */
    static int pagefs_openat2(int dirfd, const char *path, uint64_t flags, uint64_t mode,
                              uint64_t resolve) {
        struct open_how how = {.flags = flags, .mode = mode, .resolve = resolve};
        return (int)syscall(SYS_openat2, dirfd, path, &how, sizeof how);
    }

    /* prctl is variadic: the one option used, at fixed arity. */
    static int pagefs_pdeathsig(int signum) {
        return prctl(PR_SET_PDEATHSIG, (unsigned long)signum, 0UL, 0UL, 0UL);
    }
    """,
    extra_compile_args=["-O2", "-std=gnu11", "-Wall", "-Wextra"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
