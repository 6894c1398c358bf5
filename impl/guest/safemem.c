/*
 * Fault-contained copies to and from the DAX window.
 *
 * The host may truncate a file that a guest has mapped; the guest's next load or
 * store of a page wholly beyond the new end of file then raises SIGBUS (EOF-FAULT).
 * A window range that was reclaimed is PROT_NONE again, and touching it raises
 * SIGSEGV. Either must end that one access with EFAULT, never the process.
 *
 * A guarded copy publishes, in thread-local storage, the window-side address range
 * it touches and a sigjmp_buf. The process-wide handler jumps back into the copy when
 * the fault lies in that range (SIGBUS anywhere in it; SIGSEGV only inside a
 * registered window, so a stray pointer still crashes loudly). Every other fault is
 * passed to the handler that was installed before ours (Python's faulthandler, or
 * the default action), so we never hide a real bug. The handler is installed once, by
 * the first guarded copy (no syscall on later copies); a handler installed over ours
 * after that takes the faults until safemem_install() is called again, which puts
 * ours back on top with that one underneath.
 *
 * The guard is initial-exec TLS, so the handler reads it with no call into the
 * dynamic loader (which is not async-signal-safe). The window table is read by the
 * handler with no lock: its slots are published with release stores and read with
 * acquire loads, the __atomic style of vring.c.
 *
 * The copy goes in chunks; a fault inside a chunk is retried page by page up to the
 * faulting page, so the byte count returned is exact to the page: every byte before
 * it was copied, and it is less than the length asked for if and only if a fault
 * stopped the copy.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#define SAFEMEM_CHUNK (256u * 1024u)
#define SAFEMEM_MAX_WINDOWS 64

struct guard {
    sigjmp_buf env;
    uintptr_t lo, hi;          /* window-side range of the access in progress */
    volatile uintptr_t fault_addr;
    volatile int armed;
};

#define LOAD_ACQ(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define LOAD_RLX(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define STORE_REL(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
#define STORE_RLX(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)
/* Between this thread and its own signal handler: no instruction, only order. The
 * compiler knows memcpy never reads the guard and would otherwise move or drop the
 * stores around it. */
#define SIGNAL_FENCE() __atomic_signal_fence(__ATOMIC_SEQ_CST)

static __thread struct guard *volatile current_guard
    __attribute__((tls_model("initial-exec")));

static struct sigaction previous_bus, previous_segv;
static pthread_mutex_t install_lock = PTHREAD_MUTEX_INITIALIZER;
static int installed;         /* set (release) once the first install is done */
static uintptr_t page_size;   /* read once, before `installed` is published */

/* Read by the signal handler without a lock. A slot is filled lo first, then hi with
 * a release store, then published by the count (release); it is cleared hi first,
 * never moved. A reader that sees hi (acquire) sees its lo; a torn slot reads as
 * empty (hi 0), never as a range that was not registered. */
static uintptr_t window_lo[SAFEMEM_MAX_WINDOWS];
static uintptr_t window_hi[SAFEMEM_MAX_WINDOWS];
static int window_count;
static pthread_mutex_t window_lock = PTHREAD_MUTEX_INITIALIZER;

static int in_registered_window(uintptr_t addr)
{
    int n = LOAD_ACQ(&window_count);
    for (int i = 0; i < n; i++) {
        uintptr_t hi = LOAD_ACQ(&window_hi[i]);
        uintptr_t lo = LOAD_RLX(&window_lo[i]);
        if (addr >= lo && addr < hi)
            return 1;
    }
    return 0;
}

/* A fault that is not ours. A real one (raised by the kernel for an access) goes
 * to the handler installed before ours: we put it back and return, the access
 * runs again and faults into it with its own siginfo. A signal sent by a process
 * (kill, or raise() by that handler once it is done, as faulthandler does) gets
 * the default action: that handler has had its turn, and calling it again could
 * bounce between the two of us forever. */
static void not_ours(int sig, siginfo_t *info)
{
    struct sigaction *prev = sig == SIGBUS ? &previous_bus : &previous_segv;
    if (info->si_code > 0 && prev->sa_handler != SIG_IGN) {
        sigaction(sig, prev, NULL);
        return;
    }
    signal(sig, SIG_DFL);
    if (info->si_code <= 0)
        raise(sig);
}

static void on_fault(int sig, siginfo_t *info, void *uctx)
{
    struct guard *g = current_guard;
    uintptr_t addr = (uintptr_t)info->si_addr;
    if (g && g->armed && addr >= g->lo && addr < g->hi &&
        (sig == SIGBUS || in_registered_window(addr))) {
        g->armed = 0;
        g->fault_addr = addr;
        siglongjmp(g->env, 1);
    }
    not_ours(sig, info);
}

static int ours_installed(int sig)
{
    struct sigaction now;
    return sigaction(sig, NULL, &now) == 0 && (now.sa_flags & SA_SIGINFO) &&
           now.sa_sigaction == on_fault;
}

/* Install the handler, or install it again if another took its place since (for
 * example faulthandler.enable() after our first copy): that one becomes the handler
 * that faults not ours go to. */
int safemem_install(void)
{
    int rc = 0;
    pthread_mutex_lock(&install_lock);
    if (!page_size)
        page_size = (uintptr_t)sysconf(_SC_PAGESIZE);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fault;
    /* SA_NODEFER: we leave the handler by siglongjmp without restoring the signal
     * mask, so the signal must not be blocked while it runs. */
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    if (!ours_installed(SIGBUS) && sigaction(SIGBUS, &sa, &previous_bus) != 0)
        rc = -errno;
    if (rc == 0 && !ours_installed(SIGSEGV) && sigaction(SIGSEGV, &sa, &previous_segv) != 0)
        rc = -errno;
    if (rc == 0)
        STORE_REL(&installed, 1);
    pthread_mutex_unlock(&install_lock);
    return rc;
}

/* The first guarded copy installs the handler; later ones pay one load. */
static int install_once(void)
{
    return LOAD_ACQ(&installed) ? 0 : safemem_install();
}

int safemem_register_window(uintptr_t base, size_t length)
{
    int rc = -ENOSPC;
    pthread_mutex_lock(&window_lock);
    for (int i = 0; i < SAFEMEM_MAX_WINDOWS; i++) {
        if (i < window_count && LOAD_RLX(&window_hi[i]) != 0)
            continue;
        STORE_RLX(&window_lo[i], base);
        STORE_REL(&window_hi[i], base + length);
        if (i == window_count)
            STORE_REL(&window_count, i + 1);
        rc = 0;
        break;
    }
    pthread_mutex_unlock(&window_lock);
    return rc;
}

int safemem_unregister_window(uintptr_t base)
{
    int rc = -ENOENT;
    pthread_mutex_lock(&window_lock);
    for (int i = 0; i < window_count; i++) {
        if (LOAD_RLX(&window_lo[i]) == base && LOAD_RLX(&window_hi[i]) != 0) {
            STORE_REL(&window_hi[i], 0);
            STORE_RLX(&window_lo[i], 0);
            rc = 0;
            break;
        }
    }
    pthread_mutex_unlock(&window_lock);
    return rc;
}

/* One guarded memcpy. Returns 0, or 1 with *fault_addr set if a fault stopped it. */
static int guarded_memcpy(void *dst, const void *src, size_t n, uintptr_t lo,
                          uintptr_t *fault_addr)
{
    struct guard g;
    g.lo = lo;
    g.hi = lo + n;
    g.fault_addr = 0;
    g.armed = 0;
    if (sigsetjmp(g.env, 0) != 0) {
        current_guard = NULL;
        *fault_addr = g.fault_addr;
        return 1;
    }
    current_guard = &g;
    g.armed = 1;
    SIGNAL_FENCE();
    memcpy(dst, src, n);
    SIGNAL_FENCE();
    g.armed = 0;
    current_guard = NULL;
    return 0;
}

/* Copy n bytes, the window side being src (read) or dst (write). Returns the
 * number of bytes known to be copied: n, or fewer if a fault stopped the copy. */
static size_t safe_copy(char *dst, const char *src, size_t n, int window_is_src)
{
    if (install_once() != 0)
        return 0;
    const uintptr_t page = page_size;
    const uintptr_t wbase = (uintptr_t)(window_is_src ? src : dst);
    size_t done = 0, limit = n;
    while (done < limit) {
        /* Chunks end on page boundaries of the window address, so that a fault
         * in one chunk says nothing bad about the chunks before it. */
        uintptr_t waddr = wbase + done;
        size_t chunk = SAFEMEM_CHUNK - (waddr & (page - 1));
        if (chunk > limit - done)
            chunk = limit - done;
        uintptr_t fault_addr;
        if (guarded_memcpy(dst + done, src + done, chunk, waddr, &fault_addr)) {
            /* memcpy may copy out of order: keep only the pages before the
             * faulting one, and copy those again (they were readable). */
            uintptr_t fault_page = fault_addr & ~(page - 1);
            limit = fault_page > wbase ? fault_page - wbase : 0;
            continue;
        }
        done += chunk;
    }
    return done;
}

/* The window side is an address (an integer to the caller, who computes it from
 * the window's base), the other side a buffer. */
size_t safemem_read(void *dst, uintptr_t window_src, size_t n)
{
    return safe_copy(dst, (const char *)window_src, n, 1);
}

size_t safemem_write(uintptr_t window_dst, const void *src, size_t n)
{
    return safe_copy((char *)window_dst, src, n, 0);
}
