"""cffi build script for the per-thread credential calls: setfsuid/setfsgid, and the
thread's effective CAP_FSETID (capget/capset on the calling thread). Each acts on the
calling thread alone, which is what lets one daemon thread serve a request as its
guest user while the others serve other users."""

from cffi import FFI

ffibuilder = FFI()
ffibuilder.cdef(
    """
    int setfsuid(unsigned int uid);
    int setfsgid(unsigned int gid);
    int pagefs_set_fsetid(int keep);
    """
)
ffibuilder.set_source(
    "pagefs.impl.host._credentials",
    """
    #include <linux/capability.h>
    #include <sys/fsuid.h>
    #include <sys/syscall.h>
    #include <unistd.h>

    /* Drop (keep = 0) or restore (keep = 1, if permitted) CAP_FSETID in the calling
       thread's effective set: without it the kernel clears set-uid and set-gid on
       write and truncate, as for an unprivileged writer. */
    static int pagefs_set_fsetid(int keep) {
        struct __user_cap_header_struct head = {_LINUX_CAPABILITY_VERSION_3, 0};
        struct __user_cap_data_struct data[2];
        if (syscall(SYS_capget, &head, data) != 0)
            return -1;
        unsigned int bit = 1u << CAP_FSETID;
        if (keep)
            data[0].effective |= data[0].permitted & bit;
        else
            data[0].effective &= ~bit;
        return (int)syscall(SYS_capset, &head, data);
    }
    """,
    extra_compile_args=["-O2", "-std=gnu11", "-Wall", "-Wextra"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
