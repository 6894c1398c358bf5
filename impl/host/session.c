/* A guest session's tables; see session.h. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "session.h"
#include "session_private.h"

/* ---- a small open-addressing map from two 64-bit words to a pointer ------------- */

static uint64_t mix(uint64_t a, uint64_t b) {
    uint64_t x = a * 0x9E3779B97F4A7C15ull ^ (b + 0x632BE59BD9B4E019ull) * 0xC2B2AE3D27D4EB4Full;
    x ^= x >> 31;
    x *= 0xBF58476D1CE4E5B9ull;
    return x ^ (x >> 29);
}

static int map_grow(struct pf_map *m) {
    uint64_t cap = m->cap ? m->cap * 2 : 64;
    uint64_t *keys = calloc(cap * 2, sizeof *keys);
    void **vals = calloc(cap, sizeof *vals);
    if (keys == NULL || vals == NULL) {
        free(keys);
        free(vals);
        return -ENOMEM;
    }
    for (uint64_t i = 0; i < m->cap; i++) {
        if (m->keys[2 * i] == 0)
            continue;
        uint64_t j = mix(m->keys[2 * i], m->keys[2 * i + 1]) & (cap - 1);
        while (keys[2 * j] != 0)
            j = (j + 1) & (cap - 1);
        keys[2 * j] = m->keys[2 * i];
        keys[2 * j + 1] = m->keys[2 * i + 1];
        vals[j] = m->vals[i];
    }
    free(m->keys);
    free(m->vals);
    m->keys = keys;
    m->vals = vals;
    m->cap = cap;
    return 0;
}

static int64_t map_slot(const struct pf_map *m, uint64_t a, uint64_t b) {
    if (m->cap == 0)
        return -1;
    uint64_t j = mix(a, b) & (m->cap - 1);
    while (m->keys[2 * j] != 0) {
        if (m->keys[2 * j] == a && m->keys[2 * j + 1] == b)
            return (int64_t)j;
        j = (j + 1) & (m->cap - 1);
    }
    return -1;
}

static void *map_get(const struct pf_map *m, uint64_t a, uint64_t b) {
    int64_t j = map_slot(m, a, b);
    return j < 0 ? NULL : m->vals[j];
}

static int map_put(struct pf_map *m, uint64_t a, uint64_t b, void *v) {
    if ((m->len + 1) * 2 > m->cap && map_grow(m) != 0)
        return -ENOMEM;
    uint64_t j = mix(a, b) & (m->cap - 1);
    while (m->keys[2 * j] != 0)
        j = (j + 1) & (m->cap - 1);
    m->keys[2 * j] = a;
    m->keys[2 * j + 1] = b;
    m->vals[j] = v;
    m->len++;
    return 0;
}

/* Deletion by backward shift: no tombstones, probes stay short. */
static void map_del(struct pf_map *m, uint64_t a, uint64_t b) {
    int64_t found = map_slot(m, a, b);
    if (found < 0)
        return;
    uint64_t mask = m->cap - 1, i = (uint64_t)found, j = i;
    for (;;) {
        j = (j + 1) & mask;
        if (m->keys[2 * j] == 0)
            break;
        uint64_t home = mix(m->keys[2 * j], m->keys[2 * j + 1]) & mask;
        /* move j back to i if i lies cyclically in [home, j) */
        if (((j - home) & mask) >= ((j - i) & mask)) {
            m->keys[2 * i] = m->keys[2 * j];
            m->keys[2 * i + 1] = m->keys[2 * j + 1];
            m->vals[i] = m->vals[j];
            i = j;
        }
    }
    m->keys[2 * i] = 0;
    m->keys[2 * i + 1] = 0;
    m->vals[i] = NULL;
    m->len--;
}

static void map_free(struct pf_map *m) {
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

/* ---- export and session ----------------------------------------------------------- */

struct pf_export *pf_export_new(int read_only, int64_t fds_per_guest, int proc_dir) {
    struct pf_export *e = calloc(1, sizeof *e);
    if (e != NULL) {
        e->read_only = read_only;
        e->fds_per_guest = fds_per_guest;
        e->proc_dir = proc_dir;
    }
    return e;
}

void pf_export_free(struct pf_export *e) { free(e); }

uint64_t pf_next_generation(struct pf_export *e) {
    return __atomic_add_fetch(&e->generation, 1, __ATOMIC_RELAXED);
}

struct pf_session *pf_session_new(struct pf_export *e, uint64_t root, int root_fd, uint64_t dev,
                                  uint64_t ino, uint32_t kind) {
    struct pf_session *s = calloc(1, sizeof *s);
    if (s == NULL)
        return NULL;
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&s->lock, &attr);
    pthread_mutexattr_destroy(&attr);
    pthread_mutex_init(&s->window_lock, NULL);
    s->export = e;
    s->root = root;
    s->next_nodeid = root; /* the root is the first nodeid; every later one counts up */
    s->next_fh = 1;
    if (root == 0 || pf_node_add(s, root_fd, dev, ino, kind) != root) {
        pf_session_free(s);
        return NULL;
    }
    return s;
}

void pf_session_free(struct pf_session *s) {
    pf_release_all(s, 0);
    map_free(&s->nodes);
    map_free(&s->by_key);
    map_free(&s->handles);
    wb_clear(&s->window);
    pthread_mutex_destroy(&s->lock);
    pthread_mutex_destroy(&s->window_lock);
    free(s);
}

struct wb_book *pf_window(struct pf_session *s) { return &s->window; }
void pf_window_lock(struct pf_session *s) { pthread_mutex_lock(&s->window_lock); }
void pf_window_unlock(struct pf_session *s) { pthread_mutex_unlock(&s->window_lock); }

void pf_lock(struct pf_session *s) { pthread_mutex_lock(&s->lock); }
void pf_unlock(struct pf_session *s) { pthread_mutex_unlock(&s->lock); }

struct pf_node *pf_node_get(struct pf_session *s, uint64_t nodeid) {
    return nodeid ? map_get(&s->nodes, nodeid, 0) : NULL;
}

uint64_t pf_node_by_key(struct pf_session *s, uint64_t dev, uint64_t ino) {
    struct pf_node *n = map_get(&s->by_key, dev + 1, ino);
    return n ? n->nodeid : 0;
}

uint64_t pf_node_add(struct pf_session *s, int fd, uint64_t dev, uint64_t ino, uint32_t kind) {
    struct pf_node *n = calloc(1, sizeof *n);
    if (n == NULL)
        return 0;
    n->nodeid = s->next_nodeid;
    n->generation = pf_next_generation(s->export);
    n->nlookup = 1;
    n->dev = dev;
    n->ino = ino;
    n->fd = fd;
    n->kind = kind;
    if (map_put(&s->nodes, n->nodeid, 0, n) != 0) {
        free(n);
        return 0;
    }
    /* st_dev may be 0: the key word is dev + 1, never the empty mark */
    if (map_put(&s->by_key, dev + 1, ino, n) != 0) {
        map_del(&s->nodes, n->nodeid, 0);
        free(n);
        return 0;
    }
    s->next_nodeid++;
    return n->nodeid;
}

static void node_drop(struct pf_session *s, struct pf_node *n) {
    map_del(&s->nodes, n->nodeid, 0);
    map_del(&s->by_key, n->dev + 1, n->ino);
    close(n->fd);
    free(n);
}

void pf_node_forget(struct pf_session *s, uint64_t nodeid, uint64_t nlookup) {
    struct pf_node *n = pf_node_get(s, nodeid);
    if (n == NULL || nodeid == s->root)
        return;
    if (nlookup >= n->nlookup)
        node_drop(s, n);
    else
        n->nlookup -= nlookup;
}

struct pf_handle *pf_handle_get(struct pf_session *s, uint64_t fh) {
    return fh ? map_get(&s->handles, fh, 0) : NULL;
}

uint64_t pf_handle_add(struct pf_session *s, int fd, uint64_t dev, uint64_t ino, int flags,
                       int is_dir) {
    struct pf_handle *h = calloc(1, sizeof *h);
    if (h == NULL)
        return 0;
    h->fh = s->next_fh;
    h->dev = dev;
    h->ino = ino;
    h->fd = fd;
    h->flags = flags;
    h->is_dir = is_dir;
    if (map_put(&s->handles, h->fh, 0, h) != 0) {
        free(h);
        return 0;
    }
    s->next_fh++;
    return h->fh;
}

/* A handle out of the table: closed now, or by the last I/O that holds it. */
static void handle_drop(struct pf_handle *h) {
    if (h->holds > 0) {
        h->removed = 1;
        return;
    }
    close(h->fd);
    free(h);
}

int pf_handle_remove(struct pf_session *s, uint64_t fh) {
    struct pf_handle *h = pf_handle_get(s, fh);
    if (h == NULL)
        return -EBADF;
    map_del(&s->handles, fh, 0);
    handle_drop(h);
    return 0;
}

struct pf_handle *pf_handle_hold(struct pf_session *s, uint64_t fh) {
    struct pf_handle *h = pf_handle_get(s, fh);
    if (h != NULL)
        h->holds++;
    return h;
}

void pf_handle_put(struct pf_session *s, struct pf_handle *h) {
    pf_lock(s);
    if (--h->holds == 0 && h->removed)
        handle_drop(h);
    pf_unlock(s);
}

uint64_t pf_nodes(struct pf_session *s) { return s->nodes.len; }
uint64_t pf_handles(struct pf_session *s) { return s->handles.len; }

int pf_over_cap(struct pf_session *s, uint64_t n) {
    int64_t cap = s->export->fds_per_guest;
    return cap >= 0 && s->nodes.len + s->handles.len + n > (uint64_t)cap;
}

void pf_release_all(struct pf_session *s, int keep_root) {
    for (uint64_t i = 0; i < s->handles.cap; i++) {
        struct pf_handle *h = s->handles.vals[i];
        if (h != NULL)
            handle_drop(h);
    }
    map_free(&s->handles);
    struct pf_node *root = NULL;
    for (uint64_t i = 0; i < s->nodes.cap; i++) {
        struct pf_node *n = s->nodes.vals[i];
        if (n == NULL)
            continue;
        if (keep_root && n->nodeid == s->root) {
            root = n;
            continue;
        }
        close(n->fd);
        free(n);
    }
    map_free(&s->nodes);
    map_free(&s->by_key);
    if (root != NULL) {
        root->nlookup = 1;
        map_put(&s->nodes, root->nodeid, 0, root);
        map_put(&s->by_key, root->dev + 1, root->ino, root);
    }
}

uint64_t pf_handle_at(struct pf_session *s, uint64_t n) {
    for (uint64_t i = 0; i < s->handles.cap; i++) {
        struct pf_handle *h = s->handles.vals[i];
        if (h != NULL && n-- == 0)
            return h->fh;
    }
    return 0;
}
