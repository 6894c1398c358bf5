/* Adaptive spin-then-sleep waiting; see poller.h for the contract. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <sys/epoll.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#include "poller.h"

/* A budget that grows from nothing starts here: about the time a ring answer takes when
 * both sides are awake on their own CPUs. */
#define GROW_START_NS 2000u
/* Loads of the ring between two looks at the clock while spinning. */
#define SPINS_PER_CLOCK 32u

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#else
    __asm__ __volatile__("" ::: "memory");
#endif
}

int64_t poller_now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* The runnable-thread count, process-wide: /proc/loadavg opened when the library loads
 * (before a daemon confines itself: a chroot has no /proc), its last sample cached. Races
 * between threads only sample twice. */
static int loadavg_fd = -1;
static long cpus = 1; /* what spinning may count on */
static int64_t sampled_at = INT64_MIN / 2;
static long last_runnable = -1;

__attribute__((constructor)) static void open_loadavg(void) {
    loadavg_fd = open("/proc/loadavg", O_RDONLY | O_CLOEXEC);
    cpus = sysconf(_SC_NPROCESSORS_ONLN);
    if (cpus < 1)
        cpus = 1;
}

void poller_count_on_cpus(long n) {
    __atomic_store_n(&cpus, n > 0 ? n : sysconf(_SC_NPROCESSORS_ONLN), __ATOMIC_RELAXED);
}

/* "0.52 0.58 0.59 3/156 4242": the fourth field's first number counts the threads
 * runnable now, the caller among them. -1 when unreadable. */
static long runnable(void) {
    char text[128];
    ssize_t n = loadavg_fd < 0 ? -1 : pread(loadavg_fd, text, sizeof text - 1, 0);
    if (n <= 0)
        return -1;
    text[n] = 0;
    const char *s = text;
    for (int fields = 0; fields < 3; s++) {
        if (*s == 0)
            return -1;
        if (*s == ' ')
            fields++;
    }
    long count = 0;
    for (; *s >= '0' && *s <= '9'; s++)
        count = count * 10 + (*s - '0');
    return *s == '/' ? count : -1;
}

static int cpus_taken(int64_t now) {
    if (now - __atomic_load_n(&sampled_at, __ATOMIC_RELAXED) >= POLLER_SAMPLE_NS) {
        __atomic_store_n(&sampled_at, now, __ATOMIC_RELAXED);
        __atomic_store_n(&last_runnable, runnable(), __ATOMIC_RELAXED);
    }
    return __atomic_load_n(&last_runnable, __ATOMIC_RELAXED) >
           __atomic_load_n(&cpus, __ATOMIC_RELAXED);
}

int poller_cpus_taken(void) { return cpus_taken(poller_now_ns()); }

void poller_init(struct poller *p, uint32_t max_ns) {
    p->max_ns = max_ns;
    p->budget_ns = max_ns < GROW_START_NS ? max_ns : GROW_START_NS;
    p->met_ns = 0;
    p->waits = p->spun = p->slept = p->contended = p->spin_ns = 0;
    p->epfd = -1;
    p->yields = 0;
}

/* An epoll event's data: 0 is the notification fd, k + 1 watched fd k. */
int poller_use_epoll(struct poller *p, int notify_fd, const struct poller_watch *watch,
                     unsigned nwatch) {
    if (nwatch > POLLER_MAX_WATCH)
        return -EINVAL;
    int epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0)
        return -errno;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.u32 = 0};
    int bad = epoll_ctl(epfd, EPOLL_CTL_ADD, notify_fd, &ev);
    for (unsigned k = 0; k < nwatch && !bad; k++) {
        ev.events = (uint32_t)watch[k].events;
        ev.data.u32 = k + 1;
        bad = epoll_ctl(epfd, EPOLL_CTL_ADD, watch[k].fd, &ev);
    }
    if (bad) {
        int err = errno;
        close(epfd);
        return -err;
    }
    poller_close(p);
    p->epfd = epfd;
    return 0;
}

void poller_close(struct poller *p) {
    if (p->epfd >= 0)
        close(p->epfd);
    p->epfd = -1;
}

/* Doubles the budget, or makes it the whole wait that was just slept through if that is
 * more (at most the ceiling): a budget that only doubled would never catch up in a mix
 * where slow answers halve it as often as quick ones double it. */
static void grow(struct poller *p, int64_t waited_ns) {
    uint64_t grown = p->budget_ns ? 2 * (uint64_t)p->budget_ns : GROW_START_NS;
    if (grown < (uint64_t)waited_ns)
        grown = (uint64_t)waited_ns;
    p->budget_ns = grown > p->max_ns ? p->max_ns : (uint32_t)grown;
}

/* Halves the budget, but not below twice what spins that met took lately (met_ns, which
 * decays here by a quarter): in a mix of quick answers and slow ones (a request the C path
 * serves and one it hands to Python), the slow ones do not take away the spin the quick
 * ones need; only a run of long waits does. */
static void shrink(struct poller *p) {
    p->met_ns -= (p->met_ns + 3) / 4;
    uint64_t keep = 2 * (uint64_t)p->met_ns, half = p->budget_ns / 2;
    if (half < keep)
        half = keep;
    if (half > p->max_ns)
        half = p->max_ns;
    p->budget_ns = half < GROW_START_NS / 2 ? 0 : (uint32_t)half;
}

/* After a wait the spin did not meet (KVM's halt-polling rule): one no longer than the
 * ceiling would have been met by a longer spin (grow), unless no CPU was free
 * to spin on; a longer one was idle time, on which a spin is wasted (shrink, halving,
 * down to nothing once met spins are a while ago). */
static void adapt_after_sleep(struct poller *p, int64_t waited_ns, int contended) {
    if (waited_ns > (int64_t)p->max_ns)
        shrink(p);
    else if (!contended)
        grow(p, waited_ns);
}

/* Sleeps in ppoll on fds[0] (the notification fd, drained here) and the nwatch after it,
 * at most left_ns (INT64_MAX - now: no limit); the count of fds with events, or -errno. */
static int sleep_ppoll(struct pollfd *fds, unsigned nwatch, int64_t left_ns) {
    struct timespec left, *limit = NULL;
    if (left_ns < INT64_MAX / 2) {
        left.tv_sec = left_ns / 1000000000;
        left.tv_nsec = left_ns % 1000000000;
        limit = &left;
    }
    int n = ppoll(fds, 1 + nwatch, limit, NULL);
    if (n < 0)
        return -errno;
    if (n && fds[0].revents) {
        /* One read takes the whole count; a write after it leaves the fd readable, so
         * at worst the next wait returns at once and finds the ring as it is. */
        uint64_t count;
        (void)!read(fds[0].fd, &count, sizeof count);
    }
    return n;
}

/* sleep_ppoll's contract, in the epoll set `epfd` (poller_use_epoll): the notification
 * fd is not read, and the watched fds' events are put in fds[1..nwatch].revents. */
static int sleep_epoll(int epfd, struct pollfd *fds, unsigned nwatch, int64_t left_ns) {
    struct epoll_event evs[1 + POLLER_MAX_WATCH];
    int ms = -1;
    if (left_ns < INT64_MAX / 2)
        ms = left_ns > (int64_t)INT32_MAX * 1000000 ? INT32_MAX
                                                     : (int)((left_ns + 999999) / 1000000);
    int n = epoll_wait(epfd, evs, (int)(1 + nwatch), ms);
    if (n < 0)
        return -errno;
    for (unsigned k = 0; k <= nwatch; k++)
        fds[k].revents = 0;
    for (int i = 0; i < n; i++)
        if (evs[i].data.u32 <= nwatch)
            fds[evs[i].data.u32].revents = (short)evs[i].events;
    return n;
}

/* Spins until ring->ready(), the budget's end or the deadline, or until no CPU is free.
 * 1 when met; *contended set when it stopped (or never began) for want of a CPU. */
static int spin(struct poller *p, const struct poller_ring *ring, int64_t start,
                int64_t deadline, int *contended) {
    if (p->budget_ns == 0)
        return 0;
    if (cpus_taken(start)) {
        *contended = 1;
        return 0;
    }
    int64_t spin_end = start + p->budget_ns, now = start, yielded = start;
    if (spin_end > deadline)
        spin_end = deadline;
    ring->quiet(ring->ctx);
    int met = 0;
    for (unsigned i = 1;; i++) {
        if (ring->ready(ring->ctx)) {
            met = 1;
            break;
        }
        cpu_relax();
        if (i % SPINS_PER_CLOCK == 0) {
            now = poller_now_ns();
            if (now >= spin_end)
                break;
            if (cpus_taken(now)) {
                *contended = 1;
                break;
            }
            if (p->yields && now - yielded >= POLLER_YIELD_EVERY_NS) {
                sched_yield();
                yielded = poller_now_ns();
                if (yielded - now > POLLER_YIELD_TAKEN_NS) {
                    now = yielded;
                    *contended = 1;
                    break;
                }
            }
        }
    }
    if (met) {
        now = poller_now_ns();
        if (now - start > (int64_t)p->met_ns)
            p->met_ns = (uint32_t)(now - start);
    }
    p->spin_ns += (uint64_t)(now - start);
    return met;
}

int poller_wait(struct poller *p, const struct poller_ring *ring, int notify_fd,
                struct poller_watch *watch, unsigned nwatch, int64_t timeout_ns) {
    if (ring->ready(ring->ctx))
        return POLLER_READY;
    if (nwatch > POLLER_MAX_WATCH)
        return -EINVAL;
    int64_t start = poller_now_ns();
    int64_t deadline = timeout_ns < 0 ? INT64_MAX : start + timeout_ns;
    int contended = 0;
    p->waits++;
    int met = spin(p, ring, start, deadline, &contended);
    p->contended += (uint64_t)contended;
    if (met) {
        p->spun++;
        return POLLER_READY;
    }
    if (ring->arm(ring->ctx)) { /* came between the spin and the sleep: spin longer */
        adapt_after_sleep(p, poller_now_ns() - start, contended);
        return POLLER_READY;
    }
    p->slept++;
    struct pollfd fds[1 + POLLER_MAX_WATCH];
    fds[0].fd = notify_fd;
    fds[0].events = POLLIN;
    for (unsigned k = 0; k < nwatch; k++) {
        fds[1 + k].fd = watch[k].fd;
        fds[1 + k].events = (short)watch[k].events;
        watch[k].revents = 0;
    }
    for (;;) {
        int64_t now = poller_now_ns();
        if (now >= deadline) {
            adapt_after_sleep(p, now - start, contended);
            return POLLER_TIMEOUT;
        }
        int n = p->epfd >= 0 ? sleep_epoll(p->epfd, fds, nwatch, deadline - now)
                             : sleep_ppoll(fds, nwatch, deadline - now);
        if (n < 0) {
            if (n == -EINTR)
                continue;
            return n;
        }
        if (ring->ready(ring->ctx)) { /* before any hang-up: what came first counts */
            adapt_after_sleep(p, poller_now_ns() - start, contended);
            return POLLER_READY;
        }
        int event = 0;
        for (unsigned k = 0; k < nwatch; k++)
            if ((watch[k].revents = fds[1 + k].revents) != 0)
                event = 1;
        if (event)
            return POLLER_EVENT;
    }
}
