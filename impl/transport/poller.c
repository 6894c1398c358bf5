/* Adaptive spin-then-sleep waiting; see poller.h for the contract. */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#include "poller.h"

/* A budget that grows from nothing starts here: about the time a ring answer takes when
 * both sides are awake on their own CPUs. */
#define GROW_START_NS 2000u
/* Loads of the ring between two looks at the clock while spinning. */
#define SPINS_PER_CLOCK 32u
/* Below this score (of 256) spinning has not paid lately: the budget shrinks. */
#define SCORE_FLOOR 32u
/* With no budget left, one wait in this many spins again, to notice that it pays again. */
#define RETRY_EVERY 64u

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

void poller_init(struct poller *p, uint32_t max_ns) {
    p->max_ns = max_ns;
    p->budget_ns = max_ns < GROW_START_NS ? max_ns : GROW_START_NS;
    p->score = 128;
    p->idle_waits = 0;
    p->waits = p->spun = p->slept = 0;
}

static void paid(struct poller *p) { p->score += (256 - p->score + 7) / 8; }

static void grow(struct poller *p) {
    uint32_t grown = p->budget_ns ? p->budget_ns * 2 : GROW_START_NS;
    p->budget_ns = grown > p->max_ns || grown < p->budget_ns ? p->max_ns : grown;
}

static void shrink(struct poller *p) {
    p->budget_ns = p->budget_ns / 2 < GROW_START_NS / 2 ? 0 : p->budget_ns / 2;
    if (p->budget_ns == 0 && p->max_ns && ++p->idle_waits % RETRY_EVERY == 0)
        p->budget_ns = p->max_ns < GROW_START_NS ? p->max_ns : GROW_START_NS;
}

/* After a wait the spin did not meet. Had it lasted no longer than the ceiling, a longer
 * spin would have met it (grow, doubling: KVM's halt-polling rule), unless spins have
 * kept failing lately; a longer wait means spinning was wasted on it (shrink, halving,
 * down to nothing). just_missed: the answer came between the spin and the sleep. */
static void adapt_after_sleep(struct poller *p, int64_t waited_ns, int just_missed) {
    if (just_missed)
        paid(p);
    else
        p->score -= (p->score + 7) / 8;
    if (waited_ns <= (int64_t)p->max_ns && (just_missed || p->score >= SCORE_FLOOR))
        grow(p);
    else
        shrink(p);
}

static void drain(int fd) {
    uint64_t count;
    while (read(fd, &count, sizeof count) == (ssize_t)sizeof count)
        ;
}

int poller_wait(struct poller *p, const struct poller_ring *ring, int notify_fd,
                struct poller_watch *watch, unsigned nwatch, int64_t timeout_ns) {
    if (ring->ready(ring->ctx))
        return POLLER_READY;
    if (nwatch > POLLER_MAX_WATCH)
        return -EINVAL;
    int64_t start = poller_now_ns();
    int64_t deadline = timeout_ns < 0 ? INT64_MAX : start + timeout_ns;
    p->waits++;
    if (p->budget_ns) {
        int64_t spin_end = start + p->budget_ns;
        if (spin_end > deadline)
            spin_end = deadline;
        ring->quiet(ring->ctx);
        for (unsigned i = 1;; i++) {
            if (ring->ready(ring->ctx)) {
                p->spun++;
                paid(p);
                return POLLER_READY;
            }
            cpu_relax();
            if (i % SPINS_PER_CLOCK == 0 && poller_now_ns() >= spin_end)
                break;
        }
    }
    if (ring->arm(ring->ctx)) {
        adapt_after_sleep(p, poller_now_ns() - start, 1); /* just missed: spin longer */
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
            adapt_after_sleep(p, now - start, 0);
            return POLLER_TIMEOUT;
        }
        struct timespec left, *limit = NULL;
        if (deadline != INT64_MAX) {
            left.tv_sec = (deadline - now) / 1000000000;
            left.tv_nsec = (deadline - now) % 1000000000;
            limit = &left;
        }
        int n = ppoll(fds, 1 + nwatch, limit, NULL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n && fds[0].revents)
            drain(notify_fd);
        if (ring->ready(ring->ctx)) { /* before any hang-up: what came first counts */
            adapt_after_sleep(p, poller_now_ns() - start, 0);
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
