/* The backend channel's sending end; see backend_channel.h. */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "backend_channel.h"
#include "poller.h"

struct vu_backend_chan {
    pthread_mutex_t lock; /* held across a request and the wait for its ack */
    int fd;         /* the socket, -1: none (owned: closed by vu_chan_set and vu_chan_free) */
    int shmem;      /* the front-end negotiated SHMEM: the channel carries these requests */
    int broken;     /* a failed exchange: nothing more is sent */
    int timeout_ms; /* how long an ack may take */
    /* the wait for an ack spins on the socket first (adaptive, load-gated: poller.h),
     * under `lock`: a front-end that answers at once is not slept over */
    struct poller ack_poller;
    /* (st_dev, st_ino) of every file donated by SHMEM_MAP, an open-addressing set: a VMM
     * whose window mappings are guest RAM to it (QEMU 11.1) lists them in SET_MEM_TABLE.
     * Its own lock, never held across I/O: QEMU sends that SET_MEM_TABLE, and waits for
     * its answer, before it acks the next of our pipelined requests; were the set under
     * `lock`, the handler asking about it would wait for that ack, and the ack for it. */
    pthread_mutex_t donated_lock;
    uint64_t *donated; /* 2 words a slot; dev + 1 in the first (0: empty) */
    uint64_t donated_cap, donated_len;
};

static uint64_t slot_of(uint64_t a, uint64_t b, uint64_t cap) {
    uint64_t x = a * 0x9E3779B97F4A7C15ull ^ b * 0xC2B2AE3D27D4EB4Full;
    return (x ^ x >> 29) & (cap - 1);
}

static int donated_find(const struct vu_backend_chan *c, uint64_t a, uint64_t b) {
    if (c->donated_cap == 0)
        return 0;
    for (uint64_t j = slot_of(a, b, c->donated_cap); c->donated[2 * j];
         j = (j + 1) & (c->donated_cap - 1))
        if (c->donated[2 * j] == a && c->donated[2 * j + 1] == b)
            return 1;
    return 0;
}

static void donated_put(uint64_t *set, uint64_t cap, uint64_t a, uint64_t b) {
    uint64_t j = slot_of(a, b, cap);
    while (set[2 * j])
        j = (j + 1) & (cap - 1);
    set[2 * j] = a;
    set[2 * j + 1] = b;
}

/* Records a donated file (under donated_lock); -ENOMEM leaves the set as it was. */
static int donated_add_locked(struct vu_backend_chan *c, uint64_t dev, uint64_t ino) {
    uint64_t a = dev + 1;
    if (donated_find(c, a, ino))
        return 0;
    if ((c->donated_len + 1) * 2 > c->donated_cap) {
        uint64_t cap = c->donated_cap ? c->donated_cap * 2 : 64;
        uint64_t *set = calloc(cap * 2, sizeof *set);
        if (set == NULL)
            return -ENOMEM;
        for (uint64_t j = 0; j < c->donated_cap; j++)
            if (c->donated[2 * j])
                donated_put(set, cap, c->donated[2 * j], c->donated[2 * j + 1]);
        free(c->donated);
        c->donated = set;
        c->donated_cap = cap;
    }
    donated_put(c->donated, c->donated_cap, a, ino);
    c->donated_len++;
    return 0;
}

static int donated_add(struct vu_backend_chan *c, uint64_t dev, uint64_t ino) {
    pthread_mutex_lock(&c->donated_lock);
    int r = donated_add_locked(c, dev, ino);
    pthread_mutex_unlock(&c->donated_lock);
    return r;
}

int vu_chan_donated(struct vu_backend_chan *c, uint64_t dev, uint64_t ino) {
    pthread_mutex_lock(&c->donated_lock);
    int found = donated_find(c, dev + 1, ino);
    pthread_mutex_unlock(&c->donated_lock);
    return found;
}

#define FLAG_VERSION 0x1u
#define FLAG_VERSION_MASK 0x3u
#define FLAG_REPLY 0x4u
#define FLAG_NEED_REPLY 0x8u
#define HEADER 12
#define MMAP_PAYLOAD 40 /* shmid, 7 bytes padding, fd_offset, shm_offset, len, flags */
#define MAX_PAYLOAD 4096
#define MAX_FDS 8

struct vu_backend_chan *vu_chan_new(int timeout_ms, uint32_t spin_max_ns) {
    struct vu_backend_chan *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    pthread_mutex_init(&c->lock, NULL);
    pthread_mutex_init(&c->donated_lock, NULL);
    c->fd = -1;
    c->timeout_ms = timeout_ms;
    poller_init(&c->ack_poller, spin_max_ns);
    return c;
}

const struct poller *vu_chan_poller(struct vu_backend_chan *c) { return &c->ack_poller; }

void vu_chan_free(struct vu_backend_chan *c) {
    if (c == NULL)
        return;
    if (c->fd >= 0)
        close(c->fd);
    pthread_mutex_destroy(&c->lock);
    pthread_mutex_destroy(&c->donated_lock);
    free(c->donated);
    free(c);
}

void vu_chan_set(struct vu_backend_chan *c, int fd) {
    pthread_mutex_lock(&c->lock);
    int old = c->fd;
    /* vu_chan_shutdown reads it without the lock: the new one is there before the old
     * number is closed (and can be another file's) */
    __atomic_store_n(&c->fd, fd, __ATOMIC_RELEASE);
    if (old >= 0)
        close(old);
    c->broken = 0;
    pthread_mutex_unlock(&c->lock);
}

void vu_chan_set_shmem(struct vu_backend_chan *c, int shmem) {
    pthread_mutex_lock(&c->lock);
    c->shmem = shmem;
    pthread_mutex_unlock(&c->lock);
}

void vu_chan_shutdown(struct vu_backend_chan *c) {
    /* the fd stays open until vu_chan_set or vu_chan_free: never another file's number */
    int fd = __atomic_load_n(&c->fd, __ATOMIC_ACQUIRE);
    if (fd >= 0)
        shutdown(fd, SHUT_RDWR);
}

int vu_chan_fd(struct vu_backend_chan *c) { return __atomic_load_n(&c->fd, __ATOMIC_ACQUIRE); }

int vu_chan_usable(struct vu_backend_chan *c) {
    pthread_mutex_lock(&c->lock);
    int usable = c->shmem && c->fd >= 0 && !c->broken;
    pthread_mutex_unlock(&c->lock);
    return usable;
}

static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static uint32_t u32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t u64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

static int64_t now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static int send_request(int sock, uint32_t request, uint64_t fd_offset, uint64_t shm_offset,
                        uint64_t length, uint64_t flags, int fd) {
    uint8_t msg[HEADER + MMAP_PAYLOAD];
    memset(msg, 0, sizeof msg);
    put32(msg, request);
    put32(msg + 4, FLAG_VERSION | FLAG_NEED_REPLY);
    put32(msg + 8, MMAP_PAYLOAD);
    put64(msg + HEADER + 8, fd_offset);
    put64(msg + HEADER + 16, shm_offset);
    put64(msg + HEADER + 24, length);
    put64(msg + HEADER + 32, flags);
    struct iovec iov = {msg, sizeof msg};
    union {
        struct cmsghdr align;
        char room[CMSG_SPACE(sizeof(int))];
    } control;
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    if (fd >= 0) {
        mh.msg_control = control.room;
        mh.msg_controllen = sizeof control.room;
        struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(cm), &fd, sizeof fd);
    }
    size_t done = 0;
    while (done < sizeof msg) {
        ssize_t n = sendmsg(sock, &mh, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        done += (size_t)n;
        iov.iov_base = msg + done; /* the fd went with the first bytes */
        iov.iov_len = sizeof msg - done;
        mh.msg_control = NULL;
        mh.msg_controllen = 0;
    }
    return 0;
}

/* Exactly `len` bytes by `deadline`, closing any fds that come along. Reads first and
 * polls only when nothing is there: an ack wait has seen the socket readable. */
static int recv_exact(int sock, uint8_t *buf, size_t len, int64_t deadline) {
    size_t got = 0;
    for (int wait = 0; got < len;) {
        int64_t left = deadline - now_ms();
        if (left <= 0)
            return -ETIMEDOUT;
        if (wait) {
            struct pollfd p = {sock, POLLIN, 0};
            int r = poll(&p, 1, (int)(left > 1000000 ? 1000000 : left));
            if (r < 0 && errno == EINTR)
                continue;
            if (r < 0)
                return -errno;
            if (r == 0)
                continue;
        }
        struct iovec iov = {buf + got, len - got};
        union {
            struct cmsghdr align;
            char room[CMSG_SPACE(MAX_FDS * sizeof(int))];
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
                int stray;
                memcpy(&stray, CMSG_DATA(cm) + k * sizeof(int), sizeof stray);
                close(stray);
            }
        }
        if (mh.msg_flags & MSG_CTRUNC)
            return -EPROTO;
        if (n == 0)
            return -ENOTCONN; /* the front-end closed the channel */
        got += (size_t)n;
    }
    return 0;
}

/* Something to read on the socket (or its end, or an error): what an ack wait awaits. */
static int readable(void *ctx) {
    uint8_t byte;
    ssize_t n = recv(*(int *)ctx, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    return n >= 0 || (errno != EAGAIN && errno != EINTR);
}

static void stay_quiet(void *ctx) { (void)ctx; } /* a socket has no notifications to mute */

/* Until the socket has something to read, the deadline, or an error: spins for the
 * poller's budget first, then sleeps in poll (recv_exact's), so an ack sent at once
 * costs no wake-up of this thread. */
static void await_readable(struct poller *p, int sock, int64_t deadline) {
    struct poller_ring ring = {readable, stay_quiet, readable, &sock};
    struct poller_watch w = {sock, POLLIN, 0};
    int64_t left = (deadline - now_ms()) * 1000000;
    poller_wait(p, &ring, -1, &w, 1, left > 0 ? left : 0);
}

/* The REPLY_ACK to `request`: its status (>= 0), or -errno. */
static int64_t recv_ack(struct vu_backend_chan *c, uint32_t request, int64_t deadline) {
    int sock = c->fd;
    uint8_t head[HEADER], payload[MAX_PAYLOAD];
    await_readable(&c->ack_poller, sock, deadline);
    int r = recv_exact(sock, head, HEADER, deadline);
    if (r < 0)
        return r;
    uint32_t flags = u32(head + 4), size = u32(head + 8);
    if ((flags & FLAG_VERSION_MASK) != FLAG_VERSION || size > MAX_PAYLOAD)
        return -EPROTO;
    r = recv_exact(sock, payload, size, deadline);
    if (r < 0)
        return r;
    if (!(flags & FLAG_REPLY) || u32(head) != request || size < 8)
        return -EPROTO;
    uint64_t status = u64(payload);
    if (status == 0)
        return 0;
    return status < 4096 ? (int64_t)status : EIO;
}

static int begin(struct vu_backend_chan *c) {
    pthread_mutex_lock(&c->lock);
    if (!c->shmem) {
        pthread_mutex_unlock(&c->lock);
        return -EOPNOTSUPP;
    }
    if (c->fd < 0 || c->broken) {
        pthread_mutex_unlock(&c->lock);
        return -ENOTCONN;
    }
    return 0;
}

static int fail(struct vu_backend_chan *c, int err) {
    c->broken = 1;
    pthread_mutex_unlock(&c->lock);
    return err;
}

int vu_shmem_map(struct vu_backend_chan *c, int fd, uint64_t fd_offset, uint64_t shm_offset,
                 uint64_t length, int writable) {
    struct stat st;
    if (fstat(fd, &st) != 0)
        return -errno;
    int r = begin(c);
    if (r < 0)
        return r;
    if (donated_add(c, st.st_dev, st.st_ino) != 0) {
        pthread_mutex_unlock(&c->lock);
        return -ENOMEM;
    }
    r = send_request(c->fd, VU_BACKEND_SHMEM_MAP, fd_offset, shm_offset, length,
                     writable ? 1 : 0, fd);
    if (r < 0)
        return fail(c, r);
    int64_t status = recv_ack(c, VU_BACKEND_SHMEM_MAP, now_ms() + c->timeout_ms);
    if (status < 0)
        return fail(c, (int)status);
    pthread_mutex_unlock(&c->lock);
    return (int)status;
}

int vu_shmem_unmap(struct vu_backend_chan *c, const uint64_t *ranges, unsigned count,
                   int *status) {
    int r = begin(c);
    if (r < 0) {
        for (unsigned k = 0; k < count; k++)
            status[k] = r;
        return r;
    }
    for (unsigned at = 0; at < count; at += VU_UNMAP_BATCH) {
        unsigned n = count - at < VU_UNMAP_BATCH ? count - at : VU_UNMAP_BATCH;
        unsigned sent = 0;
        for (; sent < n && r == 0; sent++)
            r = send_request(c->fd, VU_BACKEND_SHMEM_UNMAP, 0, ranges[2 * (at + sent)],
                             ranges[2 * (at + sent) + 1], 0, -1);
        int64_t deadline = now_ms() + c->timeout_ms;
        for (unsigned k = 0; k < n; k++) {
            int64_t s = r == 0 && k < sent ? recv_ack(c, VU_BACKEND_SHMEM_UNMAP, deadline) : r;
            if (s < 0 && r == 0)
                r = (int)s;
            status[at + k] = (int)s;
        }
        if (r < 0) {
            for (unsigned k = at + n; k < count; k++)
                status[k] = r;
            return fail(c, r);
        }
    }
    pthread_mutex_unlock(&c->lock);
    return 0;
}
