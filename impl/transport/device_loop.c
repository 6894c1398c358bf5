/* The device's queue loop; see device_loop.h. */
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <unistd.h>

#include "device_loop.h"

/* The device's side of poller.h: requests are what it waits for, kicks its notifications. */
static int ring_ready(void *arg) {
    struct vq_device *vq = arg;
    return __atomic_load_n(&vq->avail[1], __ATOMIC_ACQUIRE) != vq->last_avail;
}

static void ring_quiet(void *arg) { vq_device_suppress_kicks(arg); }

static int ring_arm(void *arg) { return vq_device_enable_kicks(arg); }

static void notify(struct vq_loop *loop, int needed) {
    if (needed && loop->call_fd >= 0) {
        uint64_t one = 1;
        /* a full counter (never, at 2^64-1) or a closed fd: the driver polls anyway */
        (void)!write(loop->call_fd, &one, sizeof one);
    }
}

static int serve_until_stop(struct vq_loop *loop);

int vq_loop_run(struct vq_loop *loop) {
    int r = serve_until_stop(loop);
    if (r != VQ_LOOP_CHAIN)
        vq_loop_close(loop);
    return r;
}

void vq_loop_close(struct vq_loop *loop) { poller_close(&loop->poller); }

static int serve_until_stop(struct vq_loop *loop) {
    struct vq_device *vq = loop->vq;
    struct vq_chain *c = &loop->chain;
    struct poller_watch stop = {loop->stop_fd, POLLIN, 0};
    /* With every CPU taken the loop sleeps once per request: an epoll set makes that
     * one system call (poller_use_epoll); should it fail, ppoll serves as well. */
    if (loop->poller.epfd < 0)
        (void)poller_use_epoll(&loop->poller, loop->kick_fd, &stop, 1);
    /* A worker's spin gives way to a guest (or another worker) that wants its CPU. */
    loop->poller.yields = 1;
    for (;;) {
        vq_device_suppress_kicks(vq);
        for (;;) {
            int n = vq_device_pop(vq, c->segs, c->max_segs, &c->n_out, &c->head,
                                  &c->bytes_out, &c->bytes_in);
            if (n < 0)
                return n;
            if (n == 0)
                break;
            c->n_all = (unsigned)n;
            if (c->bytes_out > loop->max_request)
                return -E2BIG;
            uint32_t written = 0;
            if (loop->serve == NULL ||
                loop->serve(loop->ctx, c->segs, c->n_out, c->n_all, c->bytes_out,
                            c->bytes_in, &written) != VQ_SERVE_DONE) {
                loop->passed++;
                return VQ_LOOP_CHAIN;
            }
            loop->served++;
            uint16_t old_used = vq->used_idx;
            vq_device_push(vq, c->head, written);
            notify(loop, vq_device_notify_needed(vq, old_used));
        }
        /* Kicks stay off while spinning (EVENT_IDX: avail_event is left behind, so the
         * driver does not kick; without it VRING_USED_F_NO_NOTIFY), re-armed before a sleep. */
        struct poller_ring ring = {ring_ready, ring_quiet, ring_arm, vq};
        int r = poller_wait(&loop->poller, &ring, loop->kick_fd, &stop, 1, -1);
        if (r < 0)
            return r;
        if (r == POLLER_EVENT)
            return VQ_LOOP_STOP;
    }
}

uint32_t vq_loop_complete(struct vq_loop *loop, const char *reply, size_t len) {
    struct vq_chain *c = &loop->chain;
    uint32_t written = 0;
    int needed = vq_device_complete(loop->vq, c->segs, c->n_out, c->n_all, c->head, reply,
                                    len, &written);
    notify(loop, needed);
    return written;
}
