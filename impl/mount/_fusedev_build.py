"""cffi build script for what a FUSE server does to the kernel: mount(2) of a /dev/fuse
descriptor, umount2(2), and the passthrough ioctls that register a backing file (7.40)."""

from cffi import FFI

ffibuilder = FFI()
ffibuilder.cdef("""
    int pagefs_mount(const char *source, const char *target, const char *fstype,
                     unsigned long flags, const char *data);
    int pagefs_umount(const char *target, int flags);
    int pagefs_backing_open(int fuse_fd, int backing_fd);
    int pagefs_backing_close(int fuse_fd, unsigned int backing_id);
    #define MS_RDONLY ...
    #define MS_NOSUID ...
    #define MS_NODEV ...
    #define MNT_DETACH ...
""")
ffibuilder.set_source(
    "pagefs.impl.mount._fusedev",
    """
    #include <stdint.h>
    #include <sys/ioctl.h>
    #include <sys/mount.h>

    /* From the kernel's uapi fuse.h (7.40); older system headers lack them. */
    struct pagefs_backing_map { int32_t fd; uint32_t flags; uint64_t padding; };
    #define PAGEFS_DEV_IOC_BACKING_OPEN _IOW(229, 1, struct pagefs_backing_map)
    #define PAGEFS_DEV_IOC_BACKING_CLOSE _IOW(229, 2, uint32_t)

    static int pagefs_mount(const char *source, const char *target, const char *fstype,
                            unsigned long flags, const char *data) {
        return mount(source, target, fstype, flags, data);
    }
    static int pagefs_umount(const char *target, int flags) {
        return umount2(target, flags);
    }
    /* The backing id (> 0) the kernel gives the file, or -1 with errno. */
    static int pagefs_backing_open(int fuse_fd, int backing_fd) {
        struct pagefs_backing_map map = { .fd = backing_fd };
        return ioctl(fuse_fd, PAGEFS_DEV_IOC_BACKING_OPEN, &map);
    }
    static int pagefs_backing_close(int fuse_fd, unsigned int backing_id) {
        uint32_t id = backing_id;
        return ioctl(fuse_fd, PAGEFS_DEV_IOC_BACKING_CLOSE, &id);
    }
    """,
    extra_compile_args=["-O2", "-std=gnu11", "-Wall", "-Wextra"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
