/* The front-end's DAX window; see shmem_window.h. */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shmem_window.h"
#include "window_book.h"

#define PAGE 4096u
#define MAX_FILE_OFFSET 0x7FFFFFFFFFFFFFFFull
#define HEADER 12
#define FLAG_VERSION 0x1u
#define FLAG_VERSION_MASK 0x3u
#define FLAG_REPLY 0x4u
#define FLAG_NEED_REPLY 0x8u
#define SHMEM_MAP 9
#define SHMEM_UNMAP 10
#define MMAP_PAYLOAD 40
#define MMAP_FLAG_RW 1u
/* How often a parked serve thread looks whether calls stopped, or a message waits that
 * no waiter took (one a waiter gave up on, or one for the caller of shm_window_serve) */
#define PARK_TICK_MS 2

struct shm_window {
    uint8_t *base;
    uint64_t size;
    pthread_mutex_t lock;
    struct wb_book book;
    int observe;
    /* Held while one message is taken off the backend channel and answered: by the
     * serve thread, or by a thread waiting for its reply (shm_window_try_serve), so the
     * acks go out in the order of the requests. */
    pthread_mutex_t serve_lock;
    int handed_out; /* a message is with the serve loop's caller, not answered yet */
    int failed;     /* -errno: shm_window_try_serve broke the channel (serve reports it) */
    uint64_t waiter_served; /* messages shm_window_try_serve answered */
    /* While calls that expect backend requests come (shm_window_expect), the serve thread
     * parks off the socket (on park_fd and its stop fd): a message sent to a waiter that
     * spins for it then wakes no one, where the serve thread's wake-up cost the sender
     * about 10 us (an idle vCPU's wake-up) and made a third runnable thread on a 2-CPU
     * machine, which stops every spin (poller.h). Atomics. */
    int expecting;       /* calls in flight that expect backend requests */
    uint64_t calls;      /* such calls ever begun */
    uint64_t calls_seen; /* `calls` when the serve thread last went back to the socket */
    int parked;
    int park_fd;         /* an eventfd: written to send a parked serve thread to the socket */
};

static const int RESERVE_FLAGS = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;

struct shm_window *shm_window_new(uint64_t size) {
    if (size == 0 || size % PAGE) {
        errno = EINVAL;
        return NULL;
    }
    struct shm_window *w = calloc(1, sizeof *w);
    if (w == NULL)
        return NULL;
    void *base = mmap(NULL, size, PROT_NONE, RESERVE_FLAGS, -1, 0);
    if (base == MAP_FAILED) {
        free(w);
        return NULL;
    }
    w->park_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (w->park_fd < 0) {
        munmap(base, size);
        free(w);
        return NULL;
    }
    w->base = base;
    w->size = size;
    pthread_mutex_init(&w->lock, NULL);
    pthread_mutex_init(&w->serve_lock, NULL);
    return w;
}

void shm_window_free(struct shm_window *w) {
    if (w == NULL)
        return;
    munmap(w->base, w->size);
    close(w->park_fd);
    wb_clear(&w->book);
    pthread_mutex_destroy(&w->lock);
    pthread_mutex_destroy(&w->serve_lock);
    free(w);
}

uintptr_t shm_window_base(struct shm_window *w) { return (uintptr_t)w->base; }
void shm_window_lock(struct shm_window *w) { pthread_mutex_lock(&w->lock); }
void shm_window_unlock(struct shm_window *w) { pthread_mutex_unlock(&w->lock); }
struct wb_book *shm_window_book(struct shm_window *w) { return &w->book; }

void shm_window_observe(struct shm_window *w, int observe) {
    __atomic_store_n(&w->observe, observe, __ATOMIC_RELEASE);
}

static int check(const struct shm_window *w, uint64_t shm_offset, uint64_t length) {
    if (length == 0 || shm_offset > w->size || length > w->size - shm_offset)
        return -EINVAL; /* outside the window */
    if (shm_offset % PAGE || length % PAGE)
        return -EINVAL; /* not page aligned */
    return 0;
}

int shm_window_map(struct shm_window *w, int fd, uint64_t fd_offset, uint64_t shm_offset,
                   uint64_t length, int writable) {
    int r = check(w, shm_offset, length);
    if (r < 0)
        return r;
    if (fd_offset % PAGE)
        return -EINVAL;
    if (fd_offset > MAX_FILE_OFFSET || length > MAX_FILE_OFFSET - fd_offset)
        return -EOVERFLOW;
    struct stat st;
    if (fstat(fd, &st) != 0)
        return -errno;
    struct wb_range m = {.start = shm_offset, .end = shm_offset + length, .dev = st.st_dev,
                         .ino = st.st_ino, .shift = fd_offset - shm_offset,
                         .writable = writable};
    pthread_mutex_lock(&w->lock);
    int prot = PROT_READ | (writable ? PROT_WRITE : 0);
    if (mmap(w->base + shm_offset, length, prot, MAP_SHARED | MAP_FIXED, fd,
             (off_t)fd_offset) == MAP_FAILED)
        r = -errno;
    else
        r = wb_add(&w->book, &m, NULL);
    pthread_mutex_unlock(&w->lock);
    return r;
}

int shm_window_unmap(struct shm_window *w, uint64_t shm_offset, uint64_t length) {
    int r = check(w, shm_offset, length);
    if (r < 0)
        return r;
    pthread_mutex_lock(&w->lock);
    if (!wb_covers(&w->book, shm_offset, shm_offset + length))
        r = -EINVAL; /* an unmap of a range that is not wholly mapped */
    else if (mmap(w->base + shm_offset, length, PROT_NONE, RESERVE_FLAGS | MAP_FIXED, -1, 0) ==
             MAP_FAILED)
        r = -errno;
    else
        r = wb_remove(&w->book, shm_offset, shm_offset + length);
    pthread_mutex_unlock(&w->lock);
    return r;
}

/* ---- the backend channel ------------------------------------------------------------ */

static void close_fds(struct vu_msg *m) {
    for (int k = 0; k < m->nfds; k++)
        close(m->fds[k]);
    m->nfds = 0;
}

/* Waits for `sock` (1) or `stop_fd` (0); -errno. */
static int wait_readable(int sock, int stop_fd) {
    for (;;) {
        struct pollfd p[2] = {{sock, POLLIN, 0}, {stop_fd, POLLIN, 0}};
        int r = poll(p, 2, -1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        if (p[1].revents)
            return 0;
        if (p[0].revents)
            return 1;
    }
}

/* Exactly `len` bytes into buf (fds that come along kept in m): 1, 0 at the end of the
 * stream before any byte, or -errno (-EPROTO: the stream ended inside a message). Reads
 * first and polls only when nothing is there: the caller usually knows something is. */
static int recv_exact(int sock, int stop_fd, uint8_t *buf, size_t len, struct vu_msg *m,
                      int first) {
    size_t got = 0;
    for (int wait = 0; got < len;) {
        if (wait) {
            int r = wait_readable(sock, stop_fd);
            if (r <= 0)
                return r;
        }
        struct iovec iov = {buf + got, len - got};
        union {
            struct cmsghdr align;
            char room[CMSG_SPACE(VU_MSG_MAX_FDS * sizeof(int))];
        } control;
        struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.room,
                            .msg_controllen = sizeof control.room};
        ssize_t n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
        wait = n < 0 && errno == EAGAIN;
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n < 0)
            return -errno;
        for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
            if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
                continue;
            size_t nfd = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (size_t k = 0; k < nfd; k++) {
                int fd;
                memcpy(&fd, CMSG_DATA(cm) + k * sizeof(int), sizeof fd);
                if (m->nfds < VU_MSG_MAX_FDS)
                    m->fds[m->nfds++] = fd;
                else
                    close(fd);
            }
        }
        if (mh.msg_flags & MSG_CTRUNC)
            return -EPROTO; /* more than VU_MSG_MAX_FDS fds in one message */
        if (n == 0)
            return first && got == 0 ? 0 : -EPROTO;
        got += (size_t)n;
    }
    return 1;
}

static void parse_header(const uint8_t *head, struct vu_msg *m) {
    memcpy(&m->request, head, 4);
    memcpy(&m->flags, head + 4, 4);
    memcpy(&m->size, head + 8, 4);
}

/* 1 and a whole message in m, 0 (stopped or the end of the stream), or -errno. */
static int recv_message(int sock, int stop_fd, struct vu_msg *m) {
    uint8_t head[HEADER];
    m->nfds = 0;
    int r = recv_exact(sock, stop_fd, head, HEADER, m, 1);
    if (r <= 0)
        goto out;
    parse_header(head, m);
    if ((m->flags & FLAG_VERSION_MASK) != FLAG_VERSION || m->size > VU_MSG_MAX_PAYLOAD) {
        r = -EPROTO;
        goto out;
    }
    r = recv_exact(sock, stop_fd, m->payload, m->size, m, 0);
out:
    if (r <= 0)
        close_fds(m);
    return r;
}

static int reply(int sock, const struct vu_msg *m, uint64_t status) {
    uint8_t out[HEADER + 8];
    uint32_t flags = FLAG_VERSION | FLAG_REPLY, size = 8;
    memcpy(out, &m->request, 4);
    memcpy(out + 4, &flags, 4);
    memcpy(out + 8, &size, 4);
    memcpy(out + HEADER, &status, 8);
    size_t done = 0;
    while (done < sizeof out) {
        ssize_t n = send(sock, out + done, sizeof out - done, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        done += (size_t)n;
    }
    return 0;
}

/* The answer to a SHMEM_MAP/_UNMAP (frontend.py's _shmem_request, the reference). */
static uint64_t carry_out(struct shm_window *w, const struct vu_msg *m) {
    if (m->size < MMAP_PAYLOAD)
        return EINVAL;
    uint64_t v[4];
    memcpy(v, m->payload + 8, sizeof v); /* fd_offset, shm_offset, len, flags */
    uint8_t shmid = m->payload[0];
    uint64_t fd_offset = v[0], shm_offset = v[1], length = v[2], flags = v[3];
    if (shmid != 0)
        return EINVAL;
    int r;
    if (m->request == SHMEM_MAP) {
        if (flags & ~(uint64_t)MMAP_FLAG_RW || m->nfds != 1)
            return EINVAL;
        r = shm_window_map(w, m->fds[0], fd_offset, shm_offset, length, (int)flags);
    } else {
        r = shm_window_unmap(w, shm_offset, length);
    }
    return r < 0 ? (uint64_t)-r : 0;
}

static int ours(struct shm_window *w, uint32_t request, uint32_t flags) {
    if (flags & FLAG_REPLY)
        return 0;
    return request == SHMEM_UNMAP ||
           (request == SHMEM_MAP && !__atomic_load_n(&w->observe, __ATOMIC_ACQUIRE));
}

/* Carries out the message in msg (ours) and answers it if asked: 0 or -errno. */
static int answer(struct shm_window *w, int sock, struct vu_msg *msg) {
    uint64_t status = carry_out(w, msg);
    close_fds(msg);
    return msg->flags & FLAG_NEED_REPLY ? reply(sock, msg, status) : 0;
}

/* Whether the socket has something to read (or its end, or an error), without waiting. */
static int has_data(int sock) {
    uint8_t byte;
    ssize_t n = recv(sock, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    return n >= 0 || (errno != EAGAIN && errno != EINTR);
}

void shm_window_expect(struct shm_window *w, int delta) {
    if (delta > 0)
        __atomic_add_fetch(&w->calls, 1, __ATOMIC_RELEASE);
    __atomic_add_fetch(&w->expecting, delta, __ATOMIC_RELEASE);
}

int shm_window_expecting(struct shm_window *w) {
    return __atomic_load_n(&w->expecting, __ATOMIC_ACQUIRE) > 0;
}

static void unpark(struct shm_window *w) {
    if (__atomic_load_n(&w->parked, __ATOMIC_ACQUIRE)) {
        uint64_t one = 1;
        (void)!write(w->park_fd, &one, sizeof one);
    }
}

/* Keeps the serve thread off the socket while calls that expect backend requests come
 * (their waiters answer them), until the calls stop for a tick, a waiter sends it back
 * (unpark), or a message waits at a tick: 1, or 0 when stop_fd fired. */
static int park(struct shm_window *w, int sock, int stop_fd) {
    uint64_t seen = __atomic_load_n(&w->calls, __ATOMIC_ACQUIRE);
    if (!shm_window_expecting(w) && seen == __atomic_load_n(&w->calls_seen, __ATOMIC_ACQUIRE))
        return 1; /* no such call since the last park: the socket is ours to watch */
    __atomic_store_n(&w->parked, 1, __ATOMIC_SEQ_CST);
    int r = 1;
    for (;;) {
        struct pollfd p[2] = {{w->park_fd, POLLIN, 0}, {stop_fd, POLLIN, 0}};
        int n = poll(p, 2, PARK_TICK_MS);
        if (n < 0 && errno != EINTR) {
            r = -errno;
            break;
        }
        if (n > 0 && p[1].revents) {
            r = 0;
            break;
        }
        if (n > 0 && p[0].revents) {
            uint64_t count;
            (void)!read(w->park_fd, &count, sizeof count);
            break;
        }
        uint64_t now = __atomic_load_n(&w->calls, __ATOMIC_ACQUIRE);
        if ((!shm_window_expecting(w) && now == seen) || has_data(sock))
            break; /* the calls stopped, or a message no waiter took waits */
        seen = now;
    }
    __atomic_store_n(&w->parked, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&w->calls_seen, seen, __ATOMIC_RELEASE);
    return r;
}

int shm_window_serve(struct shm_window *w, int sock, int stop_fd, struct vu_msg *msg) {
    pthread_mutex_lock(&w->serve_lock);
    w->handed_out = 0; /* the caller answered the message it was handed, if any */
    pthread_mutex_unlock(&w->serve_lock);
    for (;;) {
        int r = park(w, sock, stop_fd);
        if (r <= 0)
            return r;
        r = wait_readable(sock, stop_fd);
        if (r <= 0)
            return r;
        pthread_mutex_lock(&w->serve_lock);
        if (w->failed < 0) { /* a waiting thread's answer failed: the channel is done */
            r = w->failed;
            pthread_mutex_unlock(&w->serve_lock);
            return r;
        }
        if (!has_data(sock)) { /* a waiting thread took it (shm_window_try_serve) */
            pthread_mutex_unlock(&w->serve_lock);
            continue;
        }
        r = recv_message(sock, stop_fd, msg);
        if (r > 0 && !ours(w, msg->request, msg->flags)) {
            w->handed_out = 1; /* no one answers another until the caller has */
            pthread_mutex_unlock(&w->serve_lock);
            return SHM_SERVE_MESSAGE;
        }
        int answered = r > 0 ? answer(w, sock, msg) : r;
        pthread_mutex_unlock(&w->serve_lock);
        if (r <= 0 || answered < 0)
            return r <= 0 ? r : answered; /* stopped, the end of the stream, or -errno */
    }
}

/* A whole message of ours is on the socket, nothing handed out: what try_serve takes.
 * Its length with the header, or 0. */
static size_t ours_pending(struct shm_window *w, int sock) {
    uint8_t head[HEADER + MMAP_PAYLOAD];
    ssize_t n = recv(sock, head, sizeof head, MSG_PEEK | MSG_DONTWAIT);
    if (n < HEADER || __atomic_load_n(&w->handed_out, __ATOMIC_ACQUIRE))
        return 0;
    uint32_t request, flags, size;
    memcpy(&request, head, 4);
    memcpy(&flags, head + 4, 4);
    memcpy(&size, head + 8, 4);
    int whole = (flags & FLAG_VERSION_MASK) == FLAG_VERSION && size <= MMAP_PAYLOAD &&
                n >= (ssize_t)(HEADER + size) && ours(w, request, flags);
    return whole ? HEADER + size : 0;
}

int shm_window_pending(struct shm_window *w, int sock) { return ours_pending(w, sock) > 0; }

int shm_window_try_serve(struct shm_window *w, int sock) {
    if (pthread_mutex_trylock(&w->serve_lock) != 0)
        return 0; /* the serve thread is at it */
    int r = 0;
    size_t len = ours_pending(w, sock);
    if (len) {
        struct vu_msg msg;
        uint8_t whole[HEADER + MMAP_PAYLOAD];
        /* there whole, so one read and no wait */
        msg.nfds = 0;
        r = recv_exact(sock, -1, whole, len, &msg, 1);
        if (r > 0) {
            parse_header(whole, &msg);
            memcpy(msg.payload, whole + HEADER, len - HEADER);
        } else {
            close_fds(&msg);
        }
        if (r > 0) {
            r = answer(w, sock, &msg) < 0 ? -EPIPE : 1;
            w->waiter_served++;
        }
        else if (r == 0)
            r = -EPROTO; /* cannot be: the whole message was there */
        if (r < 0) { /* the serve thread reports it, woken by the shutdown */
            w->failed = r;
            shutdown(sock, SHUT_RDWR);
            unpark(w);
        }
    }
    pthread_mutex_unlock(&w->serve_lock);
    return r;
}

int shm_window_waiter_turn(struct shm_window *w, int sock) {
    int r = shm_window_try_serve(w, sock);
    if (r != 0 || !has_data(sock))
        return r;
    unpark(w); /* not a waiter's to answer: the serve thread's, parked or not */
    return SHM_WAITER_LEFT;
}

uint64_t shm_window_waiter_served(struct shm_window *w) {
    pthread_mutex_lock(&w->serve_lock);
    uint64_t n = w->waiter_served;
    pthread_mutex_unlock(&w->serve_lock);
    return n;
}
