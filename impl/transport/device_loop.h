/* The device side's queue loop in C: pop a chain, let a serve function answer it, push
 * it used, notify; when the ring is empty spin (poller.h), then re-arm kicks and sleep on
 * the kick eventfd (a non-blocking eventfd: poller.h drains it). It runs without Python's lock; a chain its serve function does not
 * take is handed back to the caller, which answers it and calls the loop again.
 *
 * The transport knows nothing of what the bytes mean: the serve function (a layer above
 * supplies it, with its context) does.
 */
#ifndef PAGEFS_DEVICE_LOOP_H
#define PAGEFS_DEVICE_LOOP_H

#include <stdint.h>

#include "poller.h"
#include "vring.h"

/* A serve function's answers. */
#define VQ_SERVE_PASS 0  /* not taken: hand the chain back to the caller */
#define VQ_SERVE_DONE 1  /* answered; *written bytes were put in the writable part */

/* The loop's answers. */
#define VQ_LOOP_STOP 0   /* stop_fd became readable */
#define VQ_LOOP_CHAIN 1  /* a chain for the caller is in `chain` */
/* negative: -errno, the queue is broken (a malformed chain, an oversized request) */

typedef int (*vq_serve_fn)(void *ctx, const struct vq_seg *segs, unsigned n_out,
                           unsigned n_all, uint64_t bytes_out, uint64_t bytes_in,
                           uint32_t *written);

struct vq_chain {
    struct vq_seg *segs;  /* max_segs of room, owned by the caller */
    unsigned max_segs;
    unsigned n_out;
    unsigned n_all;
    uint16_t head;
    uint64_t bytes_out;
    uint64_t bytes_in;
};

struct vq_loop {
    struct vq_device *vq;
    struct poller poller;
    int kick_fd;
    int stop_fd;
    int call_fd;          /* -1: the driver polls */
    uint64_t max_request; /* readable bytes above this break the queue (-E2BIG) */
    vq_serve_fn serve;    /* NULL: every chain goes to the caller */
    void *ctx;
    struct vq_chain chain;
    uint64_t served;      /* chains the serve function answered */
    uint64_t passed;      /* chains handed to the caller */
};

/* Serves until a chain is handed back (call it again after), stop_fd or a broken queue;
 * the last two close what the loop holds open (vq_loop_close). */
int vq_loop_run(struct vq_loop *loop);
/* Closes the loop's epoll set (poller_use_epoll), if any; a later run opens it anew. */
void vq_loop_close(struct vq_loop *loop);
/* Answers the chain handed back by vq_loop_run (the caller's reply bytes) and notifies
 * the driver if it asked; returns the bytes that fitted. */
uint32_t vq_loop_complete(struct vq_loop *loop, const char *reply, size_t len);

#endif
