/* The back-end's end of the vhost-user backend channel (VHOST_USER_BACKEND_SHMEM_MAP and
 * _UNMAP, each with NEED_REPLY, answered by a REPLY_ACK), in C so that the back-end's
 * threads (backend.py: every queue's dispatch may map or unmap) and the host's C fast
 * path (fastpath.c: SETUPMAPPING, REMOVEMAPPING) send on it without the GIL, one request
 * at a time under the channel's own lock.
 *
 * Several UNMAPs go out before their acks are read (pipelined): the front-end answers each
 * in turn, as vhost-user lets a back-end send requests and read the REPLY_ACKs after.
 * A late, stray or malformed reply makes the channel unusable from then on (a reply could
 * otherwise be taken for the next request's): every later call answers -ENOTCONN.
 */
#ifndef PAGEFS_BACKEND_CHANNEL_H
#define PAGEFS_BACKEND_CHANNEL_H

#include <stdint.h>

#define VU_BACKEND_SHMEM_MAP 9
#define VU_BACKEND_SHMEM_UNMAP 10
#define VU_UNMAP_BATCH 64  /* UNMAPs in flight at once */

struct vu_backend_chan;
struct poller;

/* `spin_max_ns`: the ceiling of the adaptive spin on the socket before an ack wait
 * sleeps (poller.h; 0: it always sleeps at once). */
struct vu_backend_chan *vu_chan_new(int timeout_ms, uint32_t spin_max_ns);
void vu_chan_free(struct vu_backend_chan *c);
/* The channel's socket from now on (the old one closed; -1: none). */
void vu_chan_set(struct vu_backend_chan *c, int fd);
void vu_chan_set_shmem(struct vu_backend_chan *c, int shmem);
/* Wakes a thread waiting for an ack (shutdown of the socket), without the lock. */
void vu_chan_shutdown(struct vu_backend_chan *c);
/* The socket (-1: none): tests play a hostile back-end on a duplicate of it. */
int vu_chan_fd(struct vu_backend_chan *c);
/* 1 when a request could be sent now (SHMEM negotiated, a socket, not broken). */
int vu_chan_usable(struct vu_backend_chan *c);

/* The ack waits' poller (its figures; written under the channel's lock). */
const struct poller *vu_chan_poller(struct vu_backend_chan *c);

/* Whether SHMEM_MAP ever donated the file (st_dev, st_ino) on this channel. */
int vu_chan_donated(struct vu_backend_chan *c, uint64_t dev, uint64_t ino);

/* Each returns 0 when the front-end acked, a positive errno it answered instead (a status
 * outside 1..4095 is EIO), or -errno when the exchange failed: -EOPNOTSUPP (no SHMEM),
 * -ENOTCONN (no or broken channel), -ETIMEDOUT, -EPROTO (a reply that is not the ack), or
 * the socket's error; the channel is broken by the last three. vu_shmem_map records
 * the file as donated (vu_chan_donated) before sending. */
int vu_shmem_map(struct vu_backend_chan *c, int fd, uint64_t fd_offset, uint64_t shm_offset,
                 uint64_t length, int writable);
/* `count` ranges (offset, length pairs in `ranges`), pipelined; status[k] is range k's
 * answer as above (0 or a positive errno); returns 0, or -errno when the exchange failed
 * (status of ranges not answered: -errno too). */
int vu_shmem_unmap(struct vu_backend_chan *c, const uint64_t *ranges, unsigned count,
                   int *status);

#endif
