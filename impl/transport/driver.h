/* The front-end's request path in C: submit and complete on one virtqueue without the GIL.
 *
 * A request lives in guest memory from its submission until it is claimed: in its head
 * descriptor's slot (a fixed-size buffer per head) or in a buffer the caller allocated
 * (heap_gpa). Requests are named by tokens, generation << 16 | head, so a token held past
 * its request's end never names the next request on the same head.
 *
 * Completion: at most one thread at a time reaps a queue's used ring (the reaper); it
 * spins, then sleeps on the call eventfd (poller.h). Other threads waiting on the queue
 * sleep on a condition variable and are woken when the reaper hands over their request
 * or leaves. Requests nobody waits for (asynchronous ones) are reaped by a background
 * thread, which collects them for the caller's completion code; a waiter that gives up
 * hands its request to it the same way, so every buffer is recycled.
 */
#ifndef PAGEFS_DRIVER_H
#define PAGEFS_DRIVER_H

#include <stdint.h>

struct fe_shared; /* what a front-end's queues share: the connection's life, fds */
struct fe_queue;  /* one virtqueue's driver end */
struct shm_window;

struct fe_shared *fe_shared_new(int chan_fd, int stop_fd);
void fe_shared_free(struct fe_shared *sh);
/* Closes the fd the shared part opened; only once every queue is killed and quiesced. */
void fe_shared_close(struct fe_shared *sh);
/* The DAX window and the backend channel's socket (shmem_window.h): while a call that
 * expects backend requests is in flight (fe_expect_backend, +1 before and -1 after), a
 * thread spinning for its reply also answers the SHMEM_MAP/_UNMAP it finds there, so
 * neither the backend-channel thread's wake-up nor the reply's waits on the other. */
void fe_shared_window(struct fe_shared *sh, struct shm_window *w, int backend_fd);
void fe_expect_backend(struct fe_shared *sh, int delta);

/* The queue's rings start at guest address ring_gpa of `mem` (mem_size bytes); slot_size
 * bytes per head from slots_gpa (0: every request brings its own buffer). */
struct fe_queue *fe_queue_new(struct fe_shared *sh, uint8_t *mem, uint64_t mem_size,
                              uint64_t ring_gpa, uint64_t desc_off, uint64_t avail_off,
                              uint64_t used_off, uint16_t num, int event_idx,
                              uint64_t slots_gpa, uint32_t slot_size, int kick_fd,
                              int call_fd, uint32_t spin_max_ns);
void fe_queue_free(struct fe_queue *q);

/* Places `len` request bytes and room for `cap` reply bytes (in the head's slot, or at
 * heap_gpa when not 0) and publishes the chain, kicking the device when it asked to be.
 * Blocks while the queue is full (up to timeout_ns; < 0 no limit). Returns the token, or
 * -EPIPE (connection dead), -ETIMEDOUT, -EMSGSIZE (no heap_gpa and the slot is too small),
 * -EINVAL. async: its completion goes to the background unless a thread waits for it;
 * the background names it by `cookie` too (the caller's key for it, known before it is
 * submitted, so the caller can file it under that key without a lock held across here).
 * FE_DETACHED (a request without a reply nobody waits for, FUSE's FORGET): its slot is
 * recycled in C whenever the used ring is next reaped, and the device is not asked to
 * call for it; fe_drain waits until every detached request was used. */
int64_t fe_submit(struct fe_queue *q, const char *req, uint32_t len, uint32_t cap,
                  uint64_t heap_gpa, int async, int64_t timeout_ns,
                  uint64_t cookie);

#define FE_DETACHED 2

/* Waits until every detached request of q was used: 0, -ETIMEDOUT, -EPIPE, -EIO. */
int fe_drain(struct fe_queue *q, int64_t timeout_ns);

/* Waits until the request is used: 0, or -ETIMEDOUT, -EPIPE, -EIO (the device broke the
 * ring), -EALREADY (the token's request was claimed already). */
int fe_wait(struct fe_queue *q, int64_t token, int64_t timeout_ns);

/* Claims a used request: returns the reply's length (its bytes at *reply_gpa), or
 * -EALREADY (claimed by another) or -EAGAIN (not used yet). fe_release ends it, freeing
 * its descriptors, and returns its heap_gpa (0 for a slot). */
int64_t fe_claim(struct fe_queue *q, int64_t token, uint64_t *reply_gpa);
uint64_t fe_release(struct fe_queue *q, int64_t token);

/* A waiter that stops waiting hands the request to the background thread. */
void fe_abandon(struct fe_queue *q, int64_t token);

/* submit, wait, then copy the reply into out (up to out_cap) and release: one request
 * round trip in one call. Returns the reply's length or a negative errno as fe_submit and
 * fe_wait do (on -ETIMEDOUT the request is abandoned: its late reply is dropped). */
int64_t fe_call(struct fe_queue *q, const char *req, uint32_t len, uint32_t cap,
                uint64_t heap_gpa, char *out, uint32_t out_cap, int64_t timeout_ns);

/* The background reaper: blocks until asynchronous requests are used, then puts up to max
 * of them in out as pairs (queue index << 48 | token, cookie) and returns how many; 0 when stop_fd
 * fires; -EPIPE once the back-end hung up (after every reply it pushed before was
 * collected); -EIO when a device broke a ring. */
int fe_background(struct fe_queue *const *qs, unsigned nq, struct fe_shared *sh, uint64_t *out,
                  unsigned max);

/* The connection is over: every waiter returns -EPIPE, nothing new is submitted. */
void fe_kill(struct fe_shared *sh, struct fe_queue *const *qs, unsigned nq);
/* After fe_kill: waits until no thread is inside q's calls (its fds may then be closed). */
void fe_quiesce(struct fe_queue *q);

/* Adaptive polling figures: spin budget (ns), waits, met while spinning, slept, could
 * not spin for want of a CPU, time spent spinning (ns). */
void fe_poll_stats(struct fe_queue *q, uint64_t *out6);

#endif
