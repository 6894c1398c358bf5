"""cffi build script for the namespace sandbox: unshare and mount, and the reopen of an
inode through another mount of its file system (name_to_handle_at, open_by_handle_at)."""

from pathlib import Path

from cffi import FFI

HERE = Path(__file__).parent

ffibuilder = FFI()
ffibuilder.cdef(
    """
    #define CLONE_NEWNS ...
    #define MS_BIND ...
    #define MS_REC ...
    #define MS_SLAVE ...
    #define MS_RDONLY ...
    #define MS_REMOUNT ...
    #define MS_NOSUID ...
    #define MS_NODEV ...
    #define MNT_DETACH ...
    int unshare(int flags);
    int mount(const char *source, const char *target, const char *fstype,
              unsigned long flags, const void *data);
    int umount2(const char *target, int flags);
    int pagefs_reopen_through(int fd, int mount_fd, int flags);
    """
)
ffibuilder.set_source(
    "pagefs.impl.host._sandbox",
    """
    #ifndef _GNU_SOURCE
    #define _GNU_SOURCE
    #endif
    #include <sched.h>
    #include <stdlib.h>
    #include <sys/mount.h>
    #include <sys/syscall.h>
    #include <unistd.h>

    #include "reopen.h"
    """,
    sources=[str(HERE / "reopen.c")],
    include_dirs=[str(HERE)],
    extra_compile_args=["-O2", "-std=gnu11", "-Wall", "-Wextra"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
