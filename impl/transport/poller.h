/* Adaptive spin-then-sleep waiting, shared by both ends of a virtqueue.
 *
 * After a side has handed work to the other (the driver published a request, the device
 * pushed a reply), the answer often comes within microseconds, far sooner than a sleeping
 * thread could be woken (a cross-CPU eventfd wake-up costs tens of microseconds on a VM,
 * where an idle vCPU halts). So a waiter first spins on the ring, with the other side's
 * notifications suppressed, for a bounded budget; only then does it re-enable
 * notifications (virtio's EVENT_IDX rules: enable, full fence, look once more) and sleep
 * on its eventfd.
 *
 * The budget follows the request rate, by KVM's halt-polling rule: a wait that outlasted
 * the spin but not the ceiling doubles the budget, or raises it to that wait if longer
 * (a longer spin would have met it), a
 * wait past the ceiling halves it, down to nothing, so a side whose peer idles spins a
 * few times, ever more briefly, and then burns no CPU at all. A halving keeps twice the
 * time spins that met took lately (forgotten by a quarter per long wait): slow answers
 * mixed with quick ones leave the quick ones their spin. A device's ceiling should
 * cover the driver's think time between requests, a driver's the device's service time.
 *
 * Spinning pays only while a CPU is free for the spinner: on a machine where every CPU
 * is taken, a spin steals the time the other side (or anything else) needs. So a wait
 * does not spin, and a spin stops, while more threads are runnable than there are CPUs
 * (the kernel's instantaneous count, /proc/loadavg's fourth field, sampled at most every
 * POLLER_SAMPLE_NS); such waits count as `contended` and do not grow the budget.
 */
#ifndef PAGEFS_POLLER_H
#define PAGEFS_POLLER_H

#include <stdint.h>

#define POLLER_TIMEOUT 0 /* timeout_ns passed with nothing ready */
#define POLLER_READY 1   /* ring->ready() holds */
#define POLLER_EVENT 2   /* a watched fd (not the notification fd) has events; see revents */
#define POLLER_MAX_WATCH 8

struct poller {
    uint32_t budget_ns; /* the next wait spins this long before it sleeps */
    uint32_t max_ns;    /* the budget's ceiling: 0 never spins */
    uint32_t met_ns;    /* the longest a met spin took lately (decays as waits run long) */
    uint64_t waits;     /* waits that found nothing ready at once */
    uint64_t spun;      /* ... of which were met while spinning */
    uint64_t slept;     /* ... of which needed a sleep on the notification fd */
    uint64_t contended; /* ... of which did not spin, or stopped, as no CPU was free */
    uint64_t spin_ns;   /* time spent spinning, in all */
    int epfd;           /* -1: sleeps in ppoll; else the epoll set of poller_use_epoll */
    int yields;         /* 1: a spin offers its CPU now and then, and ends once taken */
};

/* A yielding spin (yields = 1) calls sched_yield every POLLER_YIELD_EVERY_NS, and stops
 * (as contended) when the call took longer than POLLER_YIELD_TAKEN_NS: another thread ran
 * on this CPU meanwhile, so spinning steals from it (the sampled count of runnable
 * threads sees that only every POLLER_SAMPLE_NS). */
#define POLLER_YIELD_EVERY_NS 4000
#define POLLER_YIELD_TAKEN_NS 5000

/* How often the count of runnable threads is sampled (process-wide). */
#define POLLER_SAMPLE_NS 1000000

/* What is waited for, as the ring's side sees it. */
struct poller_ring {
    int (*ready)(void *ctx); /* is the awaited thing there? cheap and without side effect */
    void (*quiet)(void *ctx); /* ask the other side not to notify (while spinning) */
    int (*arm)(void *ctx);   /* ask for notifications again, then (after a full fence)
                                return ready(): what came in between is not slept over */
    void *ctx;
};

/* A file descriptor watched beside the notification fd (a hang-up, a stop request). */
struct poller_watch {
    int fd;
    int events;  /* poll(2) events */
    int revents; /* set when the wait returns POLLER_EVENT */
};

void poller_init(struct poller *p, uint32_t max_ns);

/* Waits until ring->ready() holds: spins up to the budget, then arms notifications and
 * sleeps on notify_fd (a non-blocking eventfd, drained here) and the watched fds, for at
 * most timeout_ns (< 0: no limit). Returns POLLER_READY (notifications left quiet when met
 * while spinning: the caller arms them when it stops watching), POLLER_TIMEOUT,
 * POLLER_EVENT, or a negative errno. */
int poller_wait(struct poller *p, const struct poller_ring *ring, int notify_fd,
                struct poller_watch *watch, unsigned nwatch, int64_t timeout_ns);

/* From now on sleeps in a persistent epoll set holding notify_fd (edge-triggered) and
 * the watched fds (level-triggered), instead of a ppoll of them per wait: a loop that
 * sleeps once per request (every CPU taken, so nothing spins) then pays one system call
 * per sleep, where ppoll registers on every fd's wait queue anew and the eventfd needs a
 * read to be drained. An eventfd counts every write as an edge, so notify_fd is never
 * read (its counter, 64 bits, cannot fill). Every later poller_wait must pass the same
 * fds. 0, or -errno (the poller keeps sleeping in ppoll). */
int poller_use_epoll(struct poller *p, int notify_fd, const struct poller_watch *watch,
                     unsigned nwatch);

/* Closes what poller_use_epoll opened (it may be called again after). */
void poller_close(struct poller *p);

int64_t poller_now_ns(void);

/* Whether more threads are runnable than there are CPUs to count on, as last sampled
 * (or sampled now, when the sample is older than POLLER_SAMPLE_NS): 1, 0, or 0 when
 * unknown. */
int poller_cpus_taken(void);

/* How many CPUs spinning counts on, process-wide (n <= 0: the CPUs online, the default).
 * A machine's other load is counted against them; a larger n lets sides with cores of
 * their own spin whatever else runs. */
void poller_count_on_cpus(long n);

#endif
