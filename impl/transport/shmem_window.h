/* The front-end's DAX window in C (shmem_window.py is Python's view of it): an
 * inaccessible (PROT_NONE) reservation that VHOST_USER_BACKEND_SHMEM_MAP maps a donated
 * fd over (MAP_FIXED|MAP_SHARED) and _UNMAP puts back, so a stray access to an unmapped
 * part always faults; with its book (window_book.h) of what is mapped where.
 *
 * shm_window_serve answers the back-end's requests on the backend channel without
 * Python: it carries out SHMEM_MAP/_UNMAP itself and hands any other message (and every
 * SHMEM_MAP while `observe` is set) to its caller.
 */
#ifndef PAGEFS_SHMEM_WINDOW_H
#define PAGEFS_SHMEM_WINDOW_H

#include <stdint.h>

struct shm_window;
struct wb_book;

/* A reservation of `size` bytes (a multiple of the page), or NULL and errno. */
struct shm_window *shm_window_new(uint64_t size);
/* Unmaps everything and frees the window. */
void shm_window_free(struct shm_window *w);
uintptr_t shm_window_base(struct shm_window *w);
/* The window's lock, held while its book is read (shm_window_book). */
void shm_window_lock(struct shm_window *w);
void shm_window_unlock(struct shm_window *w);
struct wb_book *shm_window_book(struct shm_window *w);
/* Each 0 or -errno: -EINVAL for a range outside the window or not in whole pages (and
 * for an unmap of a range not wholly mapped), -EOVERFLOW for a file range past the
 * largest offset, or mmap's error. */
int shm_window_map(struct shm_window *w, int fd, uint64_t fd_offset, uint64_t shm_offset,
                   uint64_t length, int writable);
int shm_window_unmap(struct shm_window *w, uint64_t shm_offset, uint64_t length);
/* While set, every SHMEM_MAP goes to shm_window_serve's caller (an observer of donated
 * descriptors). */
void shm_window_observe(struct shm_window *w, int observe);

#define VU_MSG_MAX_PAYLOAD 4096
#define VU_MSG_MAX_FDS 8

/* One whole message as read from the backend channel, with its fds (owned by the caller
 * once handed over). */
struct vu_msg {
    uint32_t request;
    uint32_t flags;
    uint32_t size;
    int nfds;
    int fds[8];
    uint8_t payload[4096];
};

#define SHM_SERVE_STOP 0    /* stop_fd became readable, or the back-end closed */
#define SHM_SERVE_MESSAGE 1 /* a message for the caller is in *msg */
/* negative: -errno, the channel is unusable (a malformed message: -EPROTO) */

/* Serves SHMEM_MAP/_UNMAP on `sock` (answering each that asks for a reply) until one of
 * the answers above. */
int shm_window_serve(struct shm_window *w, int sock, int stop_fd, struct vu_msg *msg);

/* For a thread that waits for the reply to a request that makes the back-end send
 * SHMEM_MAP/_UNMAP (SETUPMAPPING, REMOVEMAPPING), so the serve thread's wake-up is not
 * on the way: whether a whole message that shm_window_serve would carry out itself is
 * on `sock` (a look, nothing taken), and taking and answering it, as shm_window_serve
 * would, unless the serve thread is at it: 1 done, 0 nothing done, -errno the channel
 * broke (shm_window_serve then returns that). */
int shm_window_pending(struct shm_window *w, int sock);
int shm_window_try_serve(struct shm_window *w, int sock);
/* A call that expects backend requests begins (delta +1) or ends (-1). While such calls
 * come, shm_window_serve parks off the socket, so a message for a waiter that spins wakes
 * nobody: the waiters answer what is theirs (shm_window_waiter_turn), and a waiter that
 * sleeps watches the socket itself. The parked thread goes back to the socket once the
 * calls stop for a tick, or at once when a waiter finds a message that is not theirs. */
void shm_window_expect(struct shm_window *w, int delta);
/* Whether such a call is in flight. */
int shm_window_expecting(struct shm_window *w);

#define SHM_WAITER_LEFT 2 /* a message no waiter answers: left to the serve thread */
/* For a waiter whose wait ended while such calls are in flight (the socket readable, or
 * ready by shm_window_pending): answers a message of ours as shm_window_try_serve does
 * (its result), or leaves any other message (or a partial one) to the serve thread,
 * sending it back to the socket (SHM_WAITER_LEFT: the waiter stops watching the socket
 * for this wait); 0 when the socket is empty. */
int shm_window_waiter_turn(struct shm_window *w, int sock);
/* How many messages shm_window_try_serve answered (the rest: the serve thread). */
uint64_t shm_window_waiter_served(struct shm_window *w);

#endif
