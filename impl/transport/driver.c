/* The front-end's request path in C; see driver.h for the contract. */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "driver.h"
#include "poller.h"
#include "shmem_window.h"
#include "vring.h"

#define ALIGN 64u /* a request's reply starts on its own cache line */

enum { FREE, INFLIGHT, USED, CLAIMED };

struct fe_entry {
    uint64_t gpa;     /* request at gpa, reply at gpa + room */
    uint64_t heap;    /* the caller's buffer, or 0 for the head's slot */
    uint64_t cookie;  /* the caller's name for it (asynchronous requests) */
    uint32_t room;
    uint32_t cap;
    uint32_t written; /* once used: the device's length, at most cap */
    uint32_t gen;
    uint16_t waiters; /* threads in fe_wait for it */
    uint8_t state;
    uint8_t async;    /* nobody may wait: the background collects it */
    uint8_t queued;   /* in the ready list */
};

struct fe_shared {
    int dead;   /* atomic: 0, or the errno waiters get (EPIPE, EIO) */
    int chan_fd;
    int stop_fd;
    int wake_fd; /* the background thread re-reads what to watch */
    /* The DAX window and its backend channel, which a waiter whose request makes the
     * back-end send SHMEM_MAP/_UNMAP serves while it spins (fe_expect_backend) */
    struct shm_window *window;
    int backend_fd;
};

struct fe_queue {
    struct vq_driver vq;
    struct poller poller;
    struct fe_shared *sh;
    pthread_mutex_t lock;
    pthread_cond_t changed; /* a request was used or released, or the reaper left */
    uint8_t *mem;
    uint64_t mem_size;
    uint64_t slots_gpa;
    uint32_t slot_size;
    int kick_fd, call_fd;
    int reaping;     /* a thread polls the used ring and the call eventfd */
    int bg_watching; /* the background thread polls the call eventfd */
    unsigned bg_need; /* async requests in flight: the background must watch */
    unsigned inflight; /* requests not yet used, less the detached ones */
    unsigned detached; /* detached requests not yet used */
    unsigned inside;  /* threads in this queue's calls */
    struct fe_entry *entries; /* by head */
    int64_t *ready;           /* used async requests for the background, as tokens */
    unsigned nready;
};

static int dead(struct fe_shared *sh) { return __atomic_load_n(&sh->dead, __ATOMIC_ACQUIRE); }

static void set_dead(struct fe_shared *sh, int why) {
    int none = 0;
    __atomic_compare_exchange_n(&sh->dead, &none, why, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}

static void signal_fd(int fd) {
    uint64_t one = 1;
    ssize_t r = write(fd, &one, sizeof one);
    (void)r; /* a full counter already signals */
}

static void drain_fd(int fd) {
    uint64_t count;
    while (read(fd, &count, sizeof count) == (ssize_t)sizeof count)
        ;
}

static int64_t token_of(struct fe_queue *q, uint16_t head) {
    return (int64_t)q->entries[head].gen << 16 | head;
}

/* The entry a token names, or NULL once that request was released. */
static struct fe_entry *entry_of(struct fe_queue *q, int64_t token) {
    uint16_t head = (uint16_t)(token & 0xFFFF);
    if (token < 0 || head >= q->vq.num || q->entries[head].gen != (uint32_t)(token >> 16) ||
        q->entries[head].state == FREE)
        return NULL;
    return &q->entries[head];
}

struct fe_shared *fe_shared_new(int chan_fd, int stop_fd) {
    struct fe_shared *sh = calloc(1, sizeof *sh);
    if (sh == NULL)
        return NULL;
    sh->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (sh->wake_fd < 0) {
        free(sh);
        return NULL;
    }
    sh->chan_fd = chan_fd;
    sh->stop_fd = stop_fd;
    return sh;
}

void fe_shared_window(struct fe_shared *sh, struct shm_window *w, int backend_fd) {
    sh->window = w;
    sh->backend_fd = backend_fd;
}

void fe_expect_backend(struct fe_shared *sh, int delta) {
    if (sh->window != NULL)
        shm_window_expect(sh->window, delta);
}

/* Whether a call in flight expects backend requests, which its waiters answer. */
static int backend_expected(struct fe_shared *sh) {
    return sh->window != NULL && shm_window_expecting(sh->window);
}

/* A backend request this thread could answer now, while it waits for its reply. */
static int backend_pending(struct fe_shared *sh) {
    return backend_expected(sh) && shm_window_pending(sh->window, sh->backend_fd);
}

void fe_shared_close(struct fe_shared *sh) {
    if (sh->wake_fd >= 0)
        close(sh->wake_fd);
    sh->wake_fd = -1;
}

void fe_shared_free(struct fe_shared *sh) {
    if (sh == NULL)
        return;
    fe_shared_close(sh);
    free(sh);
}

struct fe_queue *fe_queue_new(struct fe_shared *sh, uint8_t *mem, uint64_t mem_size,
                              uint64_t ring_gpa, uint64_t desc_off, uint64_t avail_off,
                              uint64_t used_off, uint16_t num, int event_idx,
                              uint64_t slots_gpa, uint32_t slot_size, int kick_fd,
                              int call_fd, uint32_t spin_max_ns) {
    if (num == 0 || (num & (num - 1)) || ring_gpa + used_off + vring_used_bytes(num) + 2 > mem_size ||
        (slot_size && slots_gpa + (uint64_t)slot_size * num > mem_size))
        return NULL;
    struct fe_queue *q = calloc(1, sizeof *q);
    if (q == NULL)
        return NULL;
    q->vq.next = calloc(num, sizeof *q->vq.next);
    q->vq.chain_len = calloc(num, sizeof *q->vq.chain_len);
    q->entries = calloc(num, sizeof *q->entries);
    q->ready = calloc(num, sizeof *q->ready);
    pthread_condattr_t attr;
    if (q->vq.next == NULL || q->vq.chain_len == NULL || q->entries == NULL || q->ready == NULL ||
        pthread_condattr_init(&attr)) {
        fe_queue_free(q);
        return NULL;
    }
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&q->changed, &attr);
    pthread_condattr_destroy(&attr);
    pthread_mutex_init(&q->lock, NULL);
    q->vq.desc = (struct vring_desc *)(mem + ring_gpa + desc_off);
    q->vq.avail = (uint16_t *)(mem + ring_gpa + avail_off);
    q->vq.used = mem + ring_gpa + used_off;
    q->vq.num = num;
    q->vq.event_idx = event_idx;
    vq_driver_init(&q->vq);
    poller_init(&q->poller, spin_max_ns);
    q->sh = sh;
    q->mem = mem;
    q->mem_size = mem_size;
    q->slots_gpa = slots_gpa;
    q->slot_size = slot_size;
    q->kick_fd = kick_fd;
    q->call_fd = call_fd;
    return q;
}

void fe_queue_free(struct fe_queue *q) {
    if (q == NULL)
        return;
    if (q->entries != NULL && q->ready != NULL) { /* initialised fully */
        pthread_mutex_destroy(&q->lock);
        pthread_cond_destroy(&q->changed);
    }
    free(q->vq.next);
    free(q->vq.chain_len);
    free(q->entries);
    free(q->ready);
    free(q);
}

static int enter(struct fe_queue *q) {
    pthread_mutex_lock(&q->lock);
    if (dead(q->sh)) {
        pthread_mutex_unlock(&q->lock);
        return -EPIPE;
    }
    q->inside++;
    return 0;
}

static void leave(struct fe_queue *q) {
    if (--q->inside == 0 && dead(q->sh))
        pthread_cond_broadcast(&q->changed);
    pthread_mutex_unlock(&q->lock);
}

static void deadline_ts(int64_t deadline, struct timespec *ts) {
    ts->tv_sec = deadline / 1000000000;
    ts->tv_nsec = deadline % 1000000000;
}

/* Sleeps on q->changed until signalled or the deadline (INT64_MAX: none). 0 or ETIMEDOUT. */
static int wait_changed(struct fe_queue *q, int64_t deadline) {
    if (deadline == INT64_MAX)
        return pthread_cond_wait(&q->changed, &q->lock);
    struct timespec ts;
    deadline_ts(deadline, &ts);
    return pthread_cond_timedwait(&q->changed, &q->lock, &ts);
}

static void push_ready(struct fe_queue *q, struct fe_entry *e, uint16_t head) {
    if (e->queued)
        return;
    e->queued = 1;
    q->ready[q->nready++] = token_of(q, head);
}

/* Takes every used chain (lock held). A used head that is not in flight breaks the
 * connection. Returns how many were taken, or -EIO. Unless a reaper manages
 * notifications, leaves them armed. */
static int reap(struct fe_queue *q) {
    int taken = 0, to_background = 0;
    for (;;) {
        uint32_t len;
        int head;
        while ((head = vq_driver_pop_used(&q->vq, &len)) >= 0) {
            struct fe_entry *e = &q->entries[head];
            if (e->state != INFLIGHT) {
                head = -EIO;
                break;
            }
            taken++;
            if (e->async == FE_DETACHED) { /* nobody waits: recycled here and now */
                vq_driver_free_chain(&q->vq, (uint16_t)head);
                e->state = FREE;
                e->gen++;
                q->detached--;
                continue;
            }
            e->written = len < e->cap ? len : e->cap;
            e->state = USED;
            q->inflight--;
            if (e->async) {
                q->bg_need--;
                if (e->waiters == 0) {
                    push_ready(q, e, (uint16_t)head);
                    to_background = 1;
                }
            }
        }
        if (head == -EIO) {
            set_dead(q->sh, EIO);
            taken = -EIO;
            break;
        }
        /* A reaper manages calls itself; with nothing in flight they stay as they are (quiet
         * after a reaper's spin, so the device does not call between back-to-back
         * requests: whoever waits next arms them before sleeping). */
        if (q->reaping || q->inflight == 0 || !vq_driver_enable_calls(&q->vq))
            break;
    }
    if (taken)
        pthread_cond_broadcast(&q->changed);
    if (to_background && !q->bg_watching)
        signal_fd(q->sh->wake_fd);
    return taken;
}

int64_t fe_submit(struct fe_queue *q, const char *req, uint32_t len, uint32_t cap,
                  uint64_t heap_gpa, int async, int64_t timeout_ns,
                  uint64_t cookie) {
    uint32_t room = (len + ALIGN - 1) / ALIGN * ALIGN;
    unsigned n = cap ? 2 : 1;
    if (heap_gpa == 0 && (uint64_t)room + cap > q->slot_size)
        return -EMSGSIZE;
    if (async == FE_DETACHED && heap_gpa)
        return -EINVAL; /* recycled in C: only a slot can be */
    if (heap_gpa && (heap_gpa > q->mem_size || (uint64_t)room + cap > q->mem_size - heap_gpa))
        return -EINVAL;
    int err = enter(q);
    if (err)
        return err;
    int64_t deadline = timeout_ns < 0 ? INT64_MAX : poller_now_ns() + timeout_ns;
    while (q->vq.num_free < n) {
        if (dead(q->sh)) {
            leave(q);
            return -dead(q->sh);
        }
        if (!q->reaping && reap(q) > 0)
            continue;
        /* Detached requests are reaped by nobody in particular: look again soon. */
        int64_t soon = q->detached ? poller_now_ns() + 1000000 : INT64_MAX;
        if (wait_changed(q, soon < deadline ? soon : deadline) == ETIMEDOUT &&
            poller_now_ns() >= deadline) {
            leave(q);
            return -ETIMEDOUT;
        }
    }
    if (dead(q->sh)) {
        leave(q);
        return -dead(q->sh);
    }
    uint16_t head = q->vq.free_head;
    struct fe_entry *e = &q->entries[head];
    uint64_t gpa = heap_gpa ? heap_gpa : q->slots_gpa + (uint64_t)head * q->slot_size;
    memcpy(q->mem + gpa, req, len);
    uint64_t addr[2] = {gpa, gpa + room};
    uint32_t lens[2] = {len, cap};
    uint16_t old_avail = q->vq.avail_idx;
    int got = vq_driver_add(&q->vq, addr, lens, 1, n - 1);
    if (got != head) { /* cannot happen: room was checked under the lock */
        leave(q);
        return got < 0 ? got : -EIO;
    }
    e->gpa = gpa;
    e->heap = heap_gpa;
    e->room = room;
    e->cap = cap;
    e->written = 0;
    e->waiters = 0;
    e->queued = 0;
    e->async = (uint8_t)async;
    e->cookie = cookie;
    e->state = INFLIGHT;
    int64_t token = token_of(q, head);
    if (async == FE_DETACHED)
        q->detached++;
    else
        q->inflight++;
    if (async == 1) {
        q->bg_need++;
        if (!q->reaping && !q->bg_watching)
            signal_fd(q->sh->wake_fd);
    }
    int kick = vq_driver_kick_needed(&q->vq, old_avail);
    if (kick)
        signal_fd(q->kick_fd); /* still inside: the fd stays open */
    leave(q);
    return token;
}

struct spin_ctx {
    struct fe_queue *q;
    struct fe_entry *e;
};

/* What a reaper waits for: its request used, or (e NULL) every detached request. */
static int waited_done(struct fe_queue *q, struct fe_entry *e) {
    if (e == NULL)
        return __atomic_load_n(&q->detached, __ATOMIC_ACQUIRE) == 0;
    return __atomic_load_n(&e->state, __ATOMIC_ACQUIRE) != INFLIGHT;
}

static int spin_ready(void *ctx) {
    struct spin_ctx *c = ctx;
    return dead(c->q->sh) || waited_done(c->q, c->e) || vq_driver_used_pending(&c->q->vq) ||
           backend_pending(c->q->sh);
}

static void spin_quiet(void *ctx) { vq_driver_disable_calls(&((struct spin_ctx *)ctx)->q->vq); }

static int spin_arm(void *ctx) {
    struct spin_ctx *c = ctx;
    return vq_driver_enable_calls(&c->q->vq) || spin_ready(ctx);
}

/* As the queue's reaper, polls until e is used, or (e NULL) until every detached
 * request is (lock held on entry and return). */
static int reap_until_used(struct fe_queue *q, struct fe_entry *e, int64_t deadline) {
    struct spin_ctx ctx = {q, e};
    struct poller_ring ring = {spin_ready, spin_quiet, spin_arm, &ctx};
    /* the hang-up, and the backend channel's socket while backend requests are expected:
     * the serve thread is parked then (shmem_window.h), so a sleeping waiter answers them */
    struct poller_watch watch[2] = {{q->sh->chan_fd, POLLRDHUP, 0},
                                    {q->sh->backend_fd, POLLIN, 0}};
    int watch_backend = 1; /* until a message not ours is left to the serve thread */
    int err = 0;
    q->reaping = 1;
    if (q->bg_watching)
        signal_fd(q->sh->wake_fd); /* the call eventfd is ours now */
    while (!waited_done(q, e) && !err) {
        if (dead(q->sh)) {
            err = -dead(q->sh);
            break;
        }
        int64_t left = deadline == INT64_MAX ? -1 : deadline - poller_now_ns();
        if (left < 0 && deadline != INT64_MAX) {
            err = -ETIMEDOUT;
            break;
        }
        pthread_mutex_unlock(&q->lock);
        int backend = watch_backend && backend_expected(q->sh);
        int r = poller_wait(&q->poller, &ring, q->call_fd, watch, backend ? 2 : 1, left);
        /* replies first: once its own is in, a waiter leaves the socket unlooked at (the
         * back-end had every ack it asked for), sparing two system calls */
        int replied = r == POLLER_READY && vq_driver_used_pending(&q->vq);
        if (backend && ((r == POLLER_READY && !replied) ||
                        (r == POLLER_EVENT && watch[1].revents)) &&
            shm_window_waiter_turn(q->sh->window, q->sh->backend_fd) == SHM_WAITER_LEFT)
            watch_backend = 0; /* the serve thread's: watching it would only spin */
        pthread_mutex_lock(&q->lock);
        if (reap(q) < 0)
            err = -EIO;
        else if (r == POLLER_EVENT && watch[0].revents)
            set_dead(q->sh, EPIPE); /* the back-end hung up: what it pushed was reaped */
        else if (r == POLLER_TIMEOUT && !waited_done(q, e))
            err = -ETIMEDOUT;
        else if (r < 0)
            err = r;
    }
    q->reaping = 0;
    if (reap(q) < 0 && !err) /* arms calls again for whoever watches next */
        err = -EIO;
    pthread_cond_broadcast(&q->changed);
    if (q->bg_need || q->nready)
        signal_fd(q->sh->wake_fd);
    return waited_done(q, e) ? 0 : err;
}

int fe_drain(struct fe_queue *q, int64_t timeout_ns) {
    int err = enter(q);
    if (err)
        return err;
    int64_t deadline = timeout_ns < 0 ? INT64_MAX : poller_now_ns() + timeout_ns;
    while (q->detached && !err) {
        if (dead(q->sh))
            err = -dead(q->sh);
        else if (!q->reaping)
            err = reap_until_used(q, NULL, deadline);
        else if (wait_changed(q, deadline) == ETIMEDOUT)
            err = -ETIMEDOUT;
    }
    leave(q);
    return err;
}

/* Waits (lock held) until the entry is used; see fe_wait. */
static int wait_locked(struct fe_queue *q, struct fe_entry *e, uint32_t gen, int64_t deadline) {
    int err = 0;
    e->waiters++;
    while (e->gen == gen && e->state == INFLIGHT) {
        if (dead(q->sh)) {
            err = -dead(q->sh);
            break;
        }
        if (!q->reaping) {
            err = reap_until_used(q, e, deadline);
            if (err)
                break;
        } else if (wait_changed(q, deadline) == ETIMEDOUT) {
            err = -ETIMEDOUT;
            break;
        }
    }
    if (e->gen != gen)
        return -EALREADY;
    e->waiters--;
    if (e->state != INFLIGHT)
        return e->state == USED ? 0 : -EALREADY;
    return err;
}

static void abandon_locked(struct fe_queue *q, struct fe_entry *e) {
    uint16_t head = (uint16_t)(e - q->entries);
    if (e->state == INFLIGHT && !e->async) {
        e->async = 1;
        q->bg_need++;
    }
    if (e->state == USED && e->waiters == 0)
        push_ready(q, e, head);
    if (!q->reaping)
        signal_fd(q->sh->wake_fd);
}

int fe_wait(struct fe_queue *q, int64_t token, int64_t timeout_ns) {
    int err = enter(q);
    if (err)
        return err;
    struct fe_entry *e = entry_of(q, token);
    int64_t deadline = timeout_ns < 0 ? INT64_MAX : poller_now_ns() + timeout_ns;
    err = e == NULL ? -EALREADY : wait_locked(q, e, (uint32_t)(token >> 16), deadline);
    if (err == -ETIMEDOUT && e != NULL && e->async && e->state == USED && e->waiters == 0)
        push_ready(q, e, (uint16_t)(token & 0xFFFF)); /* its Future still wants it */
    leave(q);
    return err;
}

static int64_t claim_locked(struct fe_entry *e, uint64_t *reply_gpa) {
    if (e == NULL || e->state == CLAIMED)
        return -EALREADY;
    if (e->state != USED)
        return -EAGAIN;
    e->state = CLAIMED;
    *reply_gpa = e->gpa + e->room;
    return e->written;
}

/* Drops a released entry's token from the ready list: a waiter may have claimed it
 * after it was queued for the background, and a stale token left there would let the
 * list hold more than `num` tokens once the head is reused (a heap overflow). */
static void unqueue(struct fe_queue *q, struct fe_entry *e, uint16_t head) {
    if (!e->queued)
        return;
    e->queued = 0;
    unsigned kept = 0;
    for (unsigned k = 0; k < q->nready; k++)
        if ((uint16_t)(q->ready[k] & 0xFFFF) != head)
            q->ready[kept++] = q->ready[k];
    q->nready = kept;
}

static uint64_t release_locked(struct fe_queue *q, struct fe_entry *e) {
    uint16_t head = (uint16_t)(e - q->entries);
    uint64_t heap = e->heap;
    unqueue(q, e, head);
    vq_driver_free_chain(&q->vq, head);
    e->state = FREE;
    e->gen++;
    pthread_cond_broadcast(&q->changed); /* room for a blocked submitter */
    return heap;
}

int64_t fe_claim(struct fe_queue *q, int64_t token, uint64_t *reply_gpa) {
    pthread_mutex_lock(&q->lock); /* also once dead: replies pushed before still count */
    int64_t got = claim_locked(entry_of(q, token), reply_gpa);
    pthread_mutex_unlock(&q->lock);
    return got;
}

uint64_t fe_release(struct fe_queue *q, int64_t token) {
    pthread_mutex_lock(&q->lock);
    struct fe_entry *e = entry_of(q, token);
    uint64_t heap = e != NULL && e->state == CLAIMED ? release_locked(q, e) : 0;
    pthread_mutex_unlock(&q->lock);
    return heap;
}

void fe_abandon(struct fe_queue *q, int64_t token) {
    if (enter(q))
        return;
    struct fe_entry *e = entry_of(q, token);
    if (e != NULL)
        abandon_locked(q, e);
    leave(q);
}

int64_t fe_call(struct fe_queue *q, const char *req, uint32_t len, uint32_t cap,
                uint64_t heap_gpa, char *out, uint32_t out_cap, int64_t timeout_ns) {
    int64_t start = timeout_ns < 0 ? 0 : poller_now_ns();
    int64_t token = fe_submit(q, req, len, cap, heap_gpa, 0, timeout_ns, 0);
    if (token < 0)
        return token;
    int64_t deadline = timeout_ns < 0 ? INT64_MAX : start + timeout_ns;
    int err = enter(q);
    if (err)
        return err;
    struct fe_entry *e = entry_of(q, token);
    err = e == NULL ? -EALREADY : wait_locked(q, e, (uint32_t)(token >> 16), deadline);
    int64_t got = err;
    if (!err) {
        uint64_t reply;
        got = claim_locked(e, &reply);
        if (got >= 0) {
            if ((uint64_t)got > out_cap)
                got = out_cap;
            memcpy(out, q->mem + reply, (size_t)got);
            release_locked(q, e);
        }
    } else if (err == -ETIMEDOUT) {
        abandon_locked(q, e);
    }
    leave(q);
    return got;
}

int fe_background(struct fe_queue *const *qs, unsigned nq, struct fe_shared *sh, uint64_t *out,
                  unsigned max) {
    struct pollfd fds[3 + 64];
    if (nq > 64)
        return -EINVAL;
    for (;;) {
        unsigned count = 0, nfds = 3;
        int watched[64];
        for (unsigned i = 0; i < nq; i++) {
            struct fe_queue *q = qs[i];
            pthread_mutex_lock(&q->lock);
            if (!q->reaping && (q->bg_need || dead(sh)))
                reap(q);
            unsigned k = 0;
            for (; k < q->nready && count < max; k++) {
                struct fe_entry *e = entry_of(q, q->ready[k]);
                if (e == NULL || e->state != USED)
                    continue; /* claimed by a waiter meanwhile */
                e->queued = 0;
                out[2 * count] = (uint64_t)i << 48 | (uint64_t)q->ready[k];
                out[2 * count + 1] = e->cookie;
                count++;
            }
            memmove(q->ready, q->ready + k, (q->nready - k) * sizeof *q->ready);
            q->nready -= k;
            q->bg_watching = !q->reaping && q->bg_need > 0 && !dead(sh);
            if (q->bg_watching) {
                watched[nfds - 3] = (int)i;
                fds[nfds].fd = q->call_fd;
                fds[nfds].events = POLLIN;
                nfds++;
            }
            pthread_mutex_unlock(&q->lock);
        }
        if (count)
            return (int)count;
        if (dead(sh))
            return -dead(sh);
        fds[0] = (struct pollfd){sh->stop_fd, POLLIN, 0};
        fds[1] = (struct pollfd){sh->wake_fd, POLLIN, 0};
        fds[2] = (struct pollfd){sh->chan_fd, POLLRDHUP, 0};
        if (poll(fds, nfds, -1) < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (fds[0].revents)
            return 0;
        if (fds[1].revents)
            drain_fd(sh->wake_fd);
        if (fds[2].revents)
            set_dead(sh, EPIPE); /* the next pass reaps what it pushed before */
        for (unsigned f = 3; f < nfds; f++) {
            struct fe_queue *q = qs[watched[f - 3]];
            if (!fds[f].revents)
                continue;
            pthread_mutex_lock(&q->lock);
            if (!q->reaping)
                drain_fd(q->call_fd);
            pthread_mutex_unlock(&q->lock);
        }
    }
}

void fe_kill(struct fe_shared *sh, struct fe_queue *const *qs, unsigned nq) {
    set_dead(sh, EPIPE);
    for (unsigned i = 0; i < nq; i++) {
        pthread_mutex_lock(&qs[i]->lock);
        if (qs[i]->reaping)
            signal_fd(qs[i]->call_fd); /* wakes the reaper, which sees it */
        pthread_cond_broadcast(&qs[i]->changed);
        pthread_mutex_unlock(&qs[i]->lock);
    }
    signal_fd(sh->wake_fd);
}

void fe_quiesce(struct fe_queue *q) {
    pthread_mutex_lock(&q->lock);
    while (q->inside)
        pthread_cond_wait(&q->changed, &q->lock);
    pthread_mutex_unlock(&q->lock);
}

void fe_poll_stats(struct fe_queue *q, uint64_t *out6) {
    pthread_mutex_lock(&q->lock);
    out6[0] = q->poller.budget_ns;
    out6[1] = q->poller.waits;
    out6[2] = q->poller.spun;
    out6[3] = q->poller.slept;
    out6[4] = q->poller.contended;
    out6[5] = q->poller.spin_ns;
    pthread_mutex_unlock(&q->lock);
}
