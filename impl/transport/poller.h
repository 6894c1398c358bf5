/* Adaptive spin-then-sleep waiting, shared by both ends of a virtqueue.
 *
 * After a side has handed work to the other (the driver published a request, the device
 * pushed a reply), the answer often comes within microseconds, far sooner than a sleeping
 * thread could be woken (a cross-CPU eventfd wake-up costs tens of microseconds). So a
 * waiter first spins on the ring, with the other side's notifications suppressed, for a
 * bounded budget; only then does it re-enable notifications (virtio's EVENT_IDX rules:
 * enable, full fence, look once more) and sleep on its eventfd. The budget adapts to what
 * the waits needed: it grows when an answer came soon after the spin gave up, shrinks when
 * the spin was wasted on a long wait, so a side that idles spins at most once, briefly,
 * before sleeping, and burns no CPU while idle. It also shrinks while spins keep failing
 * (on a machine with fewer free CPUs than spinners, a spin takes the CPU the other side
 * needs to answer), and is tried again, briefly, every so often.
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
    uint32_t score;     /* 0..256: how often spinning has paid lately (a moving average) */
    uint32_t idle_waits; /* waits since the budget fell to nothing (it is tried again) */
    uint64_t waits;     /* waits that found nothing ready at once */
    uint64_t spun;      /* ... of which were met while spinning */
    uint64_t slept;     /* ... of which needed a sleep on the notification fd */
};

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

int64_t poller_now_ns(void);

#endif
