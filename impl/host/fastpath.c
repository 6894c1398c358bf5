/* The host's C fast path; see fastpath.h. The Python reference for every rule here is
 * dispatch.py and passthrough.py; what they would refuse is theirs to refuse. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <unistd.h>

#include "backend_channel.h"
#include "device_loop.h"
#include "reopen.h"
#include "session_private.h"

#define PASS 0
#define DONE 1

enum {
    OP_LOOKUP = 1, OP_FORGET = 2, OP_GETATTR = 3, OP_OPEN = 14, OP_READ = 15, OP_WRITE = 16,
    OP_RELEASE = 18, OP_FLUSH = 25, OP_BATCH_FORGET = 42,
};

#define IN_HEADER 40
#define OUT_HEADER 16
#define ATTR_SIZE 88
#define MAX_TRANSFER (1u << 20)
#define MAX_FILE_OFFSET 0x7FFFFFFFFFFFFFFFull
#define NAME_MAX_BYTES 255
#define NO_ID 0xFFFFFFFFu
#define GETATTR_FH 1u
#define RELEASE_FLUSH 1u
#define RELEASE_FLOCK_UNLOCK 2u
#define READ_LOCKOWNER 2u
#define WRITE_CACHE 1u
#define WRITE_LOCKOWNER 2u
#define GUEST_OPEN_FLAGS (O_ACCMODE | O_APPEND | O_TRUNC | O_SYNC | O_DSYNC)

struct pf_rules *pf_rules(struct pf_session *s) { return &s->rules; }

/* ---- little-endian wire values ------------------------------------------------------ */

static uint32_t u32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t u64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

/* Where the reply goes: the chain's writable buffers (or one plain buffer). */
struct dst {
    struct iovec iov[64];
    unsigned n;
    size_t cap;
};

static void dst_write(const struct dst *d, size_t at, const uint8_t *src, size_t len) {
    for (unsigned k = 0; k < d->n && len; k++) {
        size_t seg = d->iov[k].iov_len;
        if (at >= seg) {
            at -= seg;
            continue;
        }
        size_t put = seg - at < len ? seg - at : len;
        memcpy((uint8_t *)d->iov[k].iov_base + at, src, put);
        src += put;
        len -= put;
        at = 0;
    }
}

/* The part of d from byte `at` on, as iovecs (for preadv). */
static unsigned dst_tail(const struct dst *d, size_t at, struct iovec *out) {
    unsigned m = 0;
    for (unsigned k = 0; k < d->n; k++) {
        size_t seg = d->iov[k].iov_len;
        if (at >= seg) {
            at -= seg;
            continue;
        }
        out[m].iov_base = (uint8_t *)d->iov[k].iov_base + at;
        out[m].iov_len = seg - at;
        m++;
        at = 0;
    }
    return m;
}

static size_t out_header(uint8_t *buf, size_t len, uint64_t unique) {
    put32(buf, (uint32_t)len);
    put32(buf + 4, 0);
    put64(buf + 8, unique);
    return len;
}

/* fuse_attr from a host stat, as dispatch.attr_values packs it. */
static void put_attr(uint8_t *p, const struct stat *st) {
    put64(p, st->st_ino);
    put64(p + 8, (uint64_t)st->st_size);
    put64(p + 16, (uint64_t)st->st_blocks);
    put64(p + 24, (uint64_t)st->st_atim.tv_sec);
    put64(p + 32, (uint64_t)st->st_mtim.tv_sec);
    put64(p + 40, (uint64_t)st->st_ctim.tv_sec);
    put32(p + 48, (uint32_t)st->st_atim.tv_nsec);
    put32(p + 52, (uint32_t)st->st_mtim.tv_nsec);
    put32(p + 56, (uint32_t)st->st_ctim.tv_nsec);
    put32(p + 60, st->st_mode);
    put32(p + 64, st->st_nlink > 0xFFFFFFFFu ? 0xFFFFFFFFu : (uint32_t)st->st_nlink);
    put32(p + 68, st->st_uid);
    put32(p + 72, st->st_gid);
    uint32_t dev = 0;
    if (st->st_rdev) {
        uint32_t ma = major(st->st_rdev), mi = minor(st->st_rdev);
        dev = (mi & 0xFF) | (ma & 0xFFF) << 8 | (mi & ~0xFFu) << 12;
    }
    put32(p + 76, dev);
    put32(p + 80, (uint32_t)st->st_blksize);
    put32(p + 84, 0);
}

/* ---- credentials (credentials.py's acting_as, without CAP_FSETID changes) ----------- */

static int set_id(int (*call)(uid_t), uint32_t value) {
    call(value);
    return (uint32_t)call(value) == value ? 0 : -1;
}

/* This thread's file-system ids: whether they are known to be the daemon's own (0/0,
 * once act_as_daemon has set them), and whether act_as changed them. A request of uid 0
 * and gid 0 then needs no switch at all: eight set*id calls fewer per OPEN. */
static __thread int ids_at_rest, ids_switched;

/* 0 and acting as the request's user, or -1 (nothing changed): the request is Python's. */
static int act_as(const struct pf_rules *r, uint32_t uid, uint32_t gid) {
    if (uid == NO_ID || gid == NO_ID)
        return -1; /* Python refuses it (EINVAL) when switching; either way, its call */
    if (!r->switching)
        return 0;
    if (r->squash_uid >= 0)
        uid = (uint32_t)r->squash_uid;
    if (r->squash_gid >= 0)
        gid = (uint32_t)r->squash_gid;
    ids_switched = !(ids_at_rest && uid == 0 && gid == 0);
    if (!ids_switched)
        return 0;
    ids_at_rest = 0;
    if (set_id((int (*)(uid_t))setfsgid, gid) != 0) {
        set_id((int (*)(uid_t))setfsgid, 0);
        return -1;
    }
    if (set_id((int (*)(uid_t))setfsuid, uid) != 0) {
        set_id((int (*)(uid_t))setfsuid, 0);
        set_id((int (*)(uid_t))setfsgid, 0);
        return -1;
    }
    return 0;
}

static void act_as_daemon(const struct pf_rules *r) {
    if (r->switching && (ids_switched || !ids_at_rest)) {
        set_id((int (*)(uid_t))setfsuid, 0);
        set_id((int (*)(uid_t))setfsgid, 0);
        ids_at_rest = 1;
        ids_switched = 0;
    }
}

/* ---- the requests ------------------------------------------------------------------- */

struct req {
    uint32_t opcode;
    uint64_t unique;
    uint64_t nodeid;
    uint32_t uid, gid;
    const uint8_t *body;  /* the guest's memory: fixed fields are copied before use */
    size_t body_len;
};

static int serve_getattr(struct pf_session *s, const struct req *q, const struct dst *d,
                         size_t *out) {
    uint8_t in[16];
    if (q->body_len != 16)
        return PASS;
    memcpy(in, q->body, 16);
    uint32_t flags = u32(in);
    if (flags & ~GETATTR_FH)
        return PASS;
    if (d->cap < OUT_HEADER + 16 + ATTR_SIZE || q->uid == NO_ID || q->gid == NO_ID)
        return PASS;
    struct pf_node *n = pf_node_get(s, q->nodeid);
    if (n == NULL)
        return PASS;
    int fd = n->fd;
    if (flags & GETATTR_FH) {
        struct pf_handle *h = pf_handle_get(s, u64(in + 8));
        if (h == NULL || h->dev != n->dev || h->ino != n->ino)
            return PASS;
        fd = h->fd;
    }
    struct stat st;
    if (fstat(fd, &st) != 0)
        return PASS;
    uint8_t reply[OUT_HEADER + 16 + ATTR_SIZE];
    memset(reply, 0, sizeof reply);
    out_header(reply, sizeof reply, q->unique);
    put64(reply + 16, s->rules.attr_timeout);
    put_attr(reply + 32, &st);
    dst_write(d, 0, reply, sizeof reply);
    *out = sizeof reply;
    return DONE;
}

static int check_name(const uint8_t *name, size_t len) {
    if (len == 0 || len > NAME_MAX_BYTES || memchr(name, '/', len) != NULL)
        return -1;
    if ((len == 1 && name[0] == '.') || (len == 2 && name[0] == '.' && name[1] == '.'))
        return -1;
    return 0;
}

static int serve_lookup(struct pf_session *s, const struct req *q, const struct dst *d,
                        size_t *out) {
    char name[NAME_MAX_BYTES + 2];
    if (q->body_len < 2 || q->body_len > NAME_MAX_BYTES + 1)
        return PASS;
    memcpy(name, q->body, q->body_len);
    size_t len = q->body_len - 1;
    if (name[len] != 0 || memchr(name, 0, len) != NULL || check_name((uint8_t *)name, len))
        return PASS;
    if (d->cap < OUT_HEADER + 40 + ATTR_SIZE)
        return PASS;
    struct pf_node *parent = pf_node_get(s, q->nodeid);
    if (parent == NULL)
        return PASS;
    if (act_as(&s->rules, q->uid, q->gid) != 0)
        return PASS;
    struct open_how how = {
        .flags = O_PATH | O_NOFOLLOW | O_CLOEXEC,
        .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
    };
    int fd = (int)syscall(SYS_openat2, parent->fd, name, &how, sizeof how);
    act_as_daemon(&s->rules);
    if (fd < 0)
        return PASS;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return PASS;
    }
    uint64_t nodeid = pf_node_by_key(s, st.st_dev, st.st_ino);
    struct pf_node *n;
    if (nodeid != 0) {
        close(fd);
        n = pf_node_get(s, nodeid);
        n->nlookup++;
    } else {
        if (pf_over_cap(s, 1)) {
            close(fd);
            return PASS;
        }
        nodeid = pf_node_add(s, fd, st.st_dev, st.st_ino, st.st_mode & S_IFMT);
        if (nodeid == 0) {
            close(fd);
            return PASS;
        }
        n = pf_node_get(s, nodeid);
    }
    uint8_t reply[OUT_HEADER + 40 + ATTR_SIZE];
    memset(reply, 0, sizeof reply);
    out_header(reply, sizeof reply, q->unique);
    put64(reply + 16, nodeid);
    put64(reply + 24, n->generation);
    put64(reply + 32, s->rules.entry_timeout);
    put64(reply + 40, s->rules.attr_timeout);
    put_attr(reply + 56, &st);
    dst_write(d, 0, reply, sizeof reply);
    *out = sizeof reply;
    return DONE;
}

static int serve_forget(struct pf_session *s, const struct req *q, size_t *out) {
    if (q->opcode == OP_FORGET) {
        if (q->body_len != 8)
            return PASS;
        pf_node_forget(s, q->nodeid, u64(q->body));
    } else {
        if (q->body_len < 8)
            return PASS;
        uint32_t count = u32(q->body);
        if ((uint64_t)count * 16 != q->body_len - 8)
            return PASS;
        for (uint32_t k = 0; k < count; k++) {
            const uint8_t *e = q->body + 8 + 16 * (size_t)k;
            pf_node_forget(s, u64(e), u64(e + 8));
        }
    }
    *out = 0;
    return DONE;
}

static int serve_open(struct pf_session *s, const struct req *q, const struct dst *d,
                      size_t *out) {
    if (q->body_len != 8 || d->cap < OUT_HEADER + 16)
        return PASS;
    uint8_t in[8];
    memcpy(in, q->body, 8);
    uint32_t flags = u32(in), open_flags = u32(in + 4);
    if (open_flags != 0) /* OPEN_KILL_SUIDGID (or bits the decoder refuses): Python's */
        return PASS;
    struct pf_node *n = pf_node_get(s, q->nodeid);
    if (n == NULL || n->kind != S_IFREG)
        return PASS;
    int writable = (flags & O_ACCMODE) == O_WRONLY || (flags & O_ACCMODE) == O_RDWR;
    if ((flags & O_ACCMODE) == O_ACCMODE)
        return PASS;
    if (s->export->read_only && (writable || flags & O_TRUNC))
        return PASS;
    if (pf_over_cap(s, 1))
        return PASS;
    char name[16];
    snprintf(name, sizeof name, "%d", n->fd);
    if (act_as(&s->rules, q->uid, q->gid) != 0)
        return PASS;
    /* relative to the process's fd directory (procfd.py), as the Python reopen: never a
     * path from the root, which under --sandbox chroot is the export */
    int fd = openat(s->export->proc_dir, name, (int)(flags & GUEST_OPEN_FLAGS) | O_CLOEXEC);
    act_as_daemon(&s->rules);
    if (fd < 0)
        return PASS;
    uint64_t fh = pf_handle_add(s, fd, n->dev, n->ino, (int)(flags & GUEST_OPEN_FLAGS), 0);
    if (fh == 0) {
        close(fd);
        return PASS;
    }
    uint8_t reply[OUT_HEADER + 16];
    memset(reply, 0, sizeof reply);
    out_header(reply, sizeof reply, q->unique);
    put64(reply + 16, fh);
    put32(reply + 24, s->rules.open_flags);
    dst_write(d, 0, reply, sizeof reply);
    *out = sizeof reply;
    return DONE;
}

/* I/O on a handle (preadv, pwrite, fsync) runs without the session's lock, so one big
 * READ or WRITE never holds up the guest's other queue or the dispatcher: the handle is
 * held instead, its fd open and its number not reused whatever a RELEASE or a reset does
 * meanwhile. Whatever was read from the tables before must be read again after. */
static void unlock_holding(struct pf_session *s, uint64_t fh) {
    pf_handle_hold(s, fh);
    pf_unlock(s);
}

static void relock_putting(struct pf_session *s, struct pf_handle *h) {
    pf_lock(s);
    pf_handle_put(s, h);
}

static int handle_writable(const struct pf_handle *h) {
    return (h->flags & O_ACCMODE) == O_WRONLY || (h->flags & O_ACCMODE) == O_RDWR;
}

static int handle_readable(const struct pf_handle *h) {
    return (h->flags & O_ACCMODE) == O_RDONLY || (h->flags & O_ACCMODE) == O_RDWR;
}

/* RELEASE and FLUSH: a file handle (never a directory's), fsync'd if writable. */
static int serve_close(struct pf_session *s, const struct req *q, const struct dst *d,
                       size_t *out) {
    if (q->body_len != 24 || d->cap < OUT_HEADER)
        return PASS;
    uint8_t in[24];
    memcpy(in, q->body, 24);
    uint64_t fh = u64(in);
    int flush = q->opcode == OP_FLUSH;
    if (q->opcode == OP_RELEASE) {
        uint32_t release_flags = u32(in + 12);
        if (release_flags & ~(RELEASE_FLUSH | RELEASE_FLOCK_UNLOCK))
            return PASS;
        flush = release_flags & RELEASE_FLUSH;
    }
    struct pf_handle *h = pf_handle_get(s, fh);
    if (h == NULL || h->is_dir)
        return PASS;
    if (q->uid == NO_ID || q->gid == NO_ID)
        return PASS; /* as act_as: the dispatcher's call */
    /* Only the fsync is done as the request's user: closing checks no permission, and the
     * four set*id calls each way would cost more than the rest of a RELEASE. */
    if (flush && handle_writable(h)) {
        struct pf_rules rules = s->rules; /* as they were when the request was taken */
        if (act_as(&rules, q->uid, q->gid) != 0)
            return PASS;
        unlock_holding(s, fh);
        int failed = fsync(h->fd) != 0;
        relock_putting(s, h);
        act_as_daemon(&rules);
        if (failed)
            return PASS;
    }
    /* a RELEASE of the same handle that came first meanwhile: the dispatcher's EBADF */
    if (q->opcode == OP_RELEASE && pf_handle_remove(s, fh) != 0)
        return PASS;
    uint8_t reply[OUT_HEADER];
    out_header(reply, sizeof reply, q->unique);
    dst_write(d, 0, reply, sizeof reply);
    *out = sizeof reply;
    return DONE;
}

static int serve_read(struct pf_session *s, const struct req *q, const struct dst *d,
                      size_t *out) {
    if (q->body_len != 40)
        return PASS;
    uint8_t in[40];
    memcpy(in, q->body, 40);
    uint64_t fh = u64(in), offset = u64(in + 8);
    uint32_t size = u32(in + 16), read_flags = u32(in + 20);
    if (read_flags & ~READ_LOCKOWNER || offset > MAX_FILE_OFFSET || size > MAX_TRANSFER)
        return PASS;
    if (d->cap < OUT_HEADER + (size_t)size)
        return PASS;
    struct pf_handle *h = pf_handle_get(s, fh);
    if (h == NULL || h->is_dir || !handle_readable(h))
        return PASS;
    if (q->uid == NO_ID || q->gid == NO_ID)
        return PASS;
    struct iovec tail[64];
    unsigned m = dst_tail(d, OUT_HEADER, tail);
    /* at most `size` bytes: trim the iovecs to it */
    size_t left = size;
    unsigned used = 0;
    for (; used < m && left; used++) {
        if (tail[used].iov_len > left)
            tail[used].iov_len = left;
        left -= tail[used].iov_len;
    }
    ssize_t got = 0;
    if (size) {
        unlock_holding(s, fh);
        got = preadv(h->fd, tail, (int)used, (off_t)offset);
        relock_putting(s, h);
    }
    if (got < 0)
        return PASS;
    uint8_t head[OUT_HEADER];
    out_header(head, OUT_HEADER + (size_t)got, q->unique);
    dst_write(d, 0, head, OUT_HEADER);
    *out = OUT_HEADER + (size_t)got;
    return DONE;
}

static int serve_write(struct pf_session *s, const struct req *q, const struct dst *d,
                       size_t *out) {
    if (q->body_len < 40 || d->cap < OUT_HEADER + 8)
        return PASS;
    uint8_t in[40];
    memcpy(in, q->body, 40);
    uint64_t fh = u64(in), offset = u64(in + 8);
    uint32_t size = u32(in + 16), write_flags = u32(in + 20);
    if (write_flags & ~(WRITE_CACHE | WRITE_LOCKOWNER)) /* KILL_SUIDGID: Python's */
        return PASS;
    if (q->body_len != 40 + (size_t)size || offset > MAX_FILE_OFFSET ||
        offset + size > MAX_FILE_OFFSET)
        return PASS;
    if (s->export->read_only)
        return PASS;
    struct pf_handle *h = pf_handle_get(s, fh);
    if (h == NULL || h->is_dir || !handle_writable(h))
        return PASS;
    struct pf_rules rules = s->rules; /* as they were when the request was taken */
    if (act_as(&rules, q->uid, q->gid) != 0)
        return PASS;
    unlock_holding(s, fh);
    ssize_t put = pwrite(h->fd, q->body + 40, size, (off_t)offset);
    relock_putting(s, h);
    act_as_daemon(&rules);
    if (put < 0)
        return PASS;
    uint8_t reply[OUT_HEADER + 8];
    memset(reply, 0, sizeof reply);
    out_header(reply, sizeof reply, q->unique);
    put32(reply + 16, (uint32_t)put);
    dst_write(d, 0, reply, sizeof reply);
    *out = sizeof reply;
    return DONE;
}

/* ---- the DAX window: SETUPMAPPING and REMOVEMAPPING --------------------------------- */

/* These change the window book and the front-end's window together (the SHMEM_MAP or
 * _UNMAP exchange on the backend channel), under the session's window lock, taken
 * before the session lock as the dispatcher takes them (dispatch.py's _setupmapping and
 * _removemapping, the reference). Before anything changes, whatever the dispatcher would
 * refuse is handed to it; afterwards a front-end's refusal of the SHMEM_MAP takes the
 * book back and hands the request to the dispatcher, which asks again and answers. */

#define OP_SETUPMAPPING 48
#define OP_REMOVEMAPPING 49
#define MAP_WRITE 1u
#define MAP_READ 2u
#define NO_FH 0xFFFFFFFFFFFFFFFFull
#define MAX_REMOVE 256 /* FUSE_REMOVEMAPPING_MAX_ENTRY: a page of entries */
#define PAGE 4096u

static int whole_pages(uint64_t offset, uint64_t length) {
    return length > 0 && offset % PAGE == 0 && length % PAGE == 0;
}

static size_t error_reply(const struct req *q, const struct dst *d, int err) {
    uint8_t reply[OUT_HEADER];
    out_header(reply, sizeof reply, q->unique);
    put32(reply + 4, (uint32_t)-err);
    dst_write(d, 0, reply, sizeof reply);
    return sizeof reply;
}

static size_t empty_reply(const struct req *q, const struct dst *d) {
    uint8_t reply[OUT_HEADER];
    out_header(reply, sizeof reply, q->unique);
    dst_write(d, 0, reply, sizeof reply);
    return sizeof reply;
}

/* The inode open at `fd` opened again with `flags` through the process's fd directory
 * (procfd.py), as the caller, already acting as the request's user: -1 on failure. */
static int reopen_as(struct pf_session *s, int fd, int flags) {
    char name[16];
    snprintf(name, sizeof name, "%d", fd);
    return openat(s->export->proc_dir, name, flags | O_CLOEXEC);
}

/* The descriptor to donate for a mapping of the inode open at `src` (passthrough.py's
 * _grant): read-write for a writable mapping (or with writable_map_fds), else read-only
 * from the export's read-only view, so the front-end can never write a read mapping's
 * file (RO-EXPORT); only a regular file (ONLY-REGULAR). -1: the dispatcher's case. */
static int grant_fd(struct pf_session *s, int src, int writable) {
    int fd;
    if (writable || s->rules.writable_map_fds)
        fd = reopen_as(s, src, O_RDWR);
    else if (s->rules.read_only_root < 0)
        fd = reopen_as(s, src, O_RDONLY);
    else
        fd = pagefs_reopen_through(src, s->rules.read_only_root, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Under both locks: the descriptor to donate, its file recorded in the book at
 * `added` (`touched`: what it replaced, whole), or -1 and nothing changed. */
static int grant_mapping(struct pf_session *s, const struct req *q, uint64_t fh, int writable,
                         struct wb_range *added, struct wb_book *touched) {
    int src = -1, temporary = -1;
    uint64_t dev, ino;
    if (act_as(&s->rules, q->uid, q->gid) != 0)
        return -1;
    if (fh != NO_FH) {
        struct pf_handle *h = pf_handle_get(s, fh);
        if (h != NULL && !h->is_dir && handle_readable(h) &&
            (!writable || (handle_writable(h) && !(h->flags & O_APPEND)))) {
            src = h->fd;
            dev = h->dev;
            ino = h->ino;
        }
    } else {
        /* a Linux guest maps by nodeid: as through a handle opened for it and released
         * (its number used up, as the dispatcher's open and release use one) */
        struct pf_node *n = pf_node_get(s, q->nodeid);
        if (n != NULL && n->kind == S_IFREG && !pf_over_cap(s, 1)) {
            temporary = reopen_as(s, n->fd, writable ? O_RDWR : O_RDONLY);
            src = temporary;
            dev = n->dev;
            ino = n->ino;
        }
    }
    int fd = src >= 0 ? grant_fd(s, src, writable) : -1;
    act_as_daemon(&s->rules);
    if (fd >= 0) {
        added->dev = dev;
        added->ino = ino;
        if (wb_add(&s->window, added, touched) != 0) {
            close(fd);
            fd = -1;
        }
    }
    if (temporary >= 0) {
        if (fd < 0) {
            close(temporary);
        } else {
            uint64_t used = pf_handle_add(s, temporary, dev, ino, writable ? O_RDWR : O_RDONLY, 0);
            if (used != 0)
                pf_handle_remove(s, used);
            else
                close(temporary);
        }
    }
    return fd;
}

static int serve_setupmapping(struct pf_session *s, const struct req *q, const struct dst *d,
                              size_t *out) {
    uint8_t in[40];
    if (q->body_len != sizeof in || d->cap < OUT_HEADER)
        return PASS;
    memcpy(in, q->body, sizeof in);
    uint64_t fh = u64(in), foffset = u64(in + 8), length = u64(in + 16), moffset = u64(in + 32);
    uint64_t flags = u64(in + 24);
    int writable = (flags & MAP_WRITE) != 0;
    if (flags & ~(uint64_t)(MAP_READ | MAP_WRITE) || q->uid == NO_ID || q->gid == NO_ID)
        return PASS;
    if (!whole_pages(foffset, length) || !whole_pages(moffset, length) ||
        foffset > MAX_FILE_OFFSET || length > MAX_FILE_OFFSET - foffset ||
        moffset > UINT64_MAX - length)
        return PASS;
    if (s->export->read_only && writable)
        return PASS;
    struct vu_backend_chan *chan = s->rules.backend;
    if (chan == NULL || !vu_chan_usable(chan))
        return PASS;
    struct wb_range added = {.start = moffset, .end = moffset + length,
                             .shift = foffset - moffset, .writable = writable};
    struct wb_book touched = {0};
    pf_window_lock(s);
    pf_lock(s);
    int fd = -1;
    if (s->rules.enabled && s->rules.initialized)
        fd = grant_mapping(s, q, fh, writable, &added, &touched);
    pf_unlock(s);
    if (fd < 0) {
        pf_window_unlock(s);
        wb_clear(&touched);
        return PASS;
    }
    /* a remap (read-only to writable) unmaps first what it replaces whole: a VMM keeps
     * one mapping per range and refuses one over another */
    uint64_t replaces[2 * MAX_REMOVE];
    int status[MAX_REMOVE];
    unsigned n = 0;
    for (uint64_t k = 0; k < touched.len; k++) {
        const struct wb_range *t = &touched.r[k];
        if (moffset <= t->start && t->end <= added.end && n < MAX_REMOVE) {
            replaces[2 * n] = t->start;
            replaces[2 * n + 1] = t->end - t->start;
            n++;
        }
    }
    int r = 0;
    if (n > 0) {
        r = vu_shmem_unmap(chan, replaces, n, status);
        for (unsigned k = 0; r == 0 && k < n; k++)
            r = status[k];
    }
    if (r == 0)
        r = vu_shmem_map(chan, fd, foffset, moffset, length, writable);
    close(fd);
    if (r != 0) {
        /* the front-end did not map it: the book goes back, less what was unmapped */
        pf_lock(s);
        wb_undo(&s->window, &added, &touched);
        for (unsigned k = 0; k < n; k++)
            wb_remove(&s->window, replaces[2 * k], replaces[2 * k] + replaces[2 * k + 1]);
        pf_unlock(s);
    }
    pf_window_unlock(s);
    wb_clear(&touched);
    if (r > 0) /* refused: the dispatcher asks again and answers as it would */
        return PASS;
    *out = r < 0 ? error_reply(q, d, r) : empty_reply(q, d);
    return DONE;
}

static int disjoint(const uint64_t *ranges, unsigned k) {
    for (unsigned j = 0; j < k; j++)
        if (ranges[2 * j] < ranges[2 * k] + ranges[2 * k + 1] &&
            ranges[2 * k] < ranges[2 * j] + ranges[2 * j + 1])
            return 0;
    return 1;
}

static int serve_removemapping(struct pf_session *s, const struct req *q, const struct dst *d,
                               size_t *out) {
    if (q->body_len < 4 || d->cap < OUT_HEADER || q->uid == NO_ID || q->gid == NO_ID)
        return PASS;
    uint8_t head[4];
    memcpy(head, q->body, 4);
    uint32_t count = u32(head);
    if (count < 1 || count > MAX_REMOVE || q->body_len != 4 + 16 * (size_t)count)
        return PASS;
    uint64_t ranges[2 * MAX_REMOVE];
    memcpy(ranges, q->body + 4, 16 * (size_t)count);
    struct vu_backend_chan *chan = s->rules.backend;
    if (chan == NULL || !vu_chan_usable(chan))
        return PASS;
    pf_window_lock(s);
    pf_lock(s);
    /* only what the dispatcher would remove whole: every range mapped, none twice */
    int ok = s->rules.enabled && s->rules.initialized;
    for (unsigned k = 0; ok && k < count; k++)
        ok = whole_pages(ranges[2 * k], ranges[2 * k + 1]) &&
             ranges[2 * k] <= UINT64_MAX - ranges[2 * k + 1] &&
             wb_covers(&s->window, ranges[2 * k], ranges[2 * k] + ranges[2 * k + 1]) &&
             disjoint(ranges, k);
    for (unsigned k = 0; ok && k < count; k++)
        wb_remove(&s->window, ranges[2 * k], ranges[2 * k] + ranges[2 * k + 1]);
    pf_unlock(s);
    if (!ok) {
        pf_window_unlock(s);
        return PASS;
    }
    int status[MAX_REMOVE];
    int r = vu_shmem_unmap(chan, ranges, count, status);
    pf_window_unlock(s);
    for (unsigned k = 0; r == 0 && k < count; k++)
        r = status[k] > 0 ? -status[k] : status[k];
    *out = r != 0 ? error_reply(q, d, r) : empty_reply(q, d);
    return DONE;
}

/* SETUPMAPPING and REMOVEMAPPING: outside the session lock (they take the window lock
 * first); 1 when the opcode is one of them. */
static int serve_mapping(struct pf_session *s, const struct req *q, const struct dst *d,
                         size_t *out, int *r) {
    if (q->opcode == OP_SETUPMAPPING)
        *r = serve_setupmapping(s, q, d, out);
    else if (q->opcode == OP_REMOVEMAPPING)
        *r = serve_removemapping(s, q, d, out);
    else
        return 0;
    if (*r == DONE) {
        pf_lock(s);
        s->rules.served++;
        pf_unlock(s);
    }
    return 1;
}

static int serve(struct pf_session *s, const uint8_t *buf, size_t len, const struct dst *d,
                 size_t *out) {
    if (len < IN_HEADER)
        return PASS;
    uint8_t head[IN_HEADER];
    memcpy(head, buf, IN_HEADER);
    struct req q = {
        .opcode = u32(head + 4), .unique = u64(head + 8), .nodeid = u64(head + 16),
        .uid = u32(head + 24), .gid = u32(head + 28),
        .body = buf + IN_HEADER, .body_len = len - IN_HEADER,
    };
    if (u32(head) != len || (head[36] | head[37]) != 0) /* length, extension headers */
        return PASS;
    int r = PASS;
    if (serve_mapping(s, &q, d, out, &r))
        return r;
    pf_lock(s);
    if (s->rules.enabled && s->rules.initialized) {
        switch (q.opcode) {
        case OP_GETATTR: r = serve_getattr(s, &q, d, out); break;
        case OP_LOOKUP: r = serve_lookup(s, &q, d, out); break;
        case OP_FORGET:
        case OP_BATCH_FORGET: r = serve_forget(s, &q, out); break;
        case OP_OPEN: r = serve_open(s, &q, d, out); break;
        case OP_RELEASE:
        case OP_FLUSH: r = serve_close(s, &q, d, out); break;
        case OP_READ: r = serve_read(s, &q, d, out); break;
        case OP_WRITE: r = serve_write(s, &q, d, out); break;
        default: break;
        }
    }
    if (r == DONE)
        s->rules.served++;
    pf_unlock(s);
    return r;
}

int pf_serve_chain(void *ctx, const struct vq_seg *segs, unsigned n_out, unsigned n_all,
                   uint64_t bytes_out, uint64_t bytes_in, uint32_t *written) {
    if (n_out != 1 || n_all - n_out > 64)
        return VQ_SERVE_PASS;
    struct dst d = {.n = n_all - n_out, .cap = bytes_in};
    for (unsigned k = 0; k < d.n; k++) {
        d.iov[k].iov_base = segs[n_out + k].ptr;
        d.iov[k].iov_len = segs[n_out + k].len;
    }
    size_t out = 0;
    if (serve(ctx, segs[0].ptr, bytes_out, &d, &out) != DONE)
        return VQ_SERVE_PASS;
    *written = (uint32_t)out;
    return VQ_SERVE_DONE;
}

int pf_serve_buffer(struct pf_session *s, const uint8_t *req, size_t len, uint8_t *reply,
                    size_t cap, size_t *reply_len) {
    struct dst d = {.n = 1, .cap = cap};
    d.iov[0].iov_base = reply;
    d.iov[0].iov_len = cap;
    return serve(s, req, len, &d, reply_len) == DONE;
}
