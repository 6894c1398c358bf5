"""cffi build script for prctl(PR_SET_PDEATHSIG): the one call a launcher's child makes
between fork and exec, compiled like the project's other Linux calls."""

from cffi import FFI

ffibuilder = FFI()
ffibuilder.cdef("int pagefs_set_pdeathsig(int signum);")
ffibuilder.set_source(
    "pagefs.impl.client._child",
    """
    #include <sys/prctl.h>

    /* prctl is variadic: one fixed-arity call for cffi. */
    static int pagefs_set_pdeathsig(int signum) {
        return prctl(PR_SET_PDEATHSIG, (unsigned long)signum, 0UL, 0UL, 0UL);
    }
    """,
    extra_compile_args=["-O2", "-std=gnu11", "-Wall", "-Wextra"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
