/* A guest session's tables, the one home of what a guest holds: nodeid -> pinned O_PATH
 * descriptor with its lookup count and host identity (st_dev, st_ino), identity ->
 * nodeid (hard links share a nodeid), and handle -> open descriptor with its access
 * flags. The Python passthrough layer (passthrough.py) and the C fast path (fastpath.c)
 * both use them, under the session's one recursive lock.
 *
 * Nodeids and handles count up and are never reused (NODEID, HANDLE).
 */
#ifndef PAGEFS_SESSION_H
#define PAGEFS_SESSION_H

#include <stdint.h>

struct pf_node {
    uint64_t nodeid;
    uint64_t generation;
    uint64_t nlookup;
    uint64_t dev;
    uint64_t ino;
    int fd;          /* O_PATH, pins the inode */
    uint32_t kind;   /* S_IFMT of the pinned inode, fixed for its life */
};

struct pf_handle {
    uint64_t fh;
    uint64_t dev;
    uint64_t ino;
    int fd;
    int flags;       /* the guest's open flags as kept (GUEST_OPEN_FLAGS) */
    int is_dir;
    uint32_t holds;  /* I/O in progress on fd without the lock (pf_handle_hold) */
    int removed;     /* out of the table: the last pf_handle_put closes fd */
};

struct pf_map {
    uint64_t *keys;  /* 2 words per slot; key word 0 == 0: empty (ids and st_dev are never 0) */
    void **vals;
    uint64_t cap;
    uint64_t len;
};

/* What the whole export shares: the generation counter (FUSE asks that (nodeid,
 * generation) never repeats) and the rules the fast path obeys. */
struct pf_export {
    uint64_t generation;
    int read_only;
    int64_t fds_per_guest;   /* < 0: no cap */
    int proc_dir;            /* the process's fd directory (procfd.directory()): inodes are
                                reopened by openat(proc_dir, "N"), never by a path from the
                                root, which under --sandbox chroot is the export */
};

struct pf_session;

struct pf_export *pf_export_new(int read_only, int64_t fds_per_guest, int proc_dir);
void pf_export_free(struct pf_export *e);
uint64_t pf_next_generation(struct pf_export *e);

/* A session knowing only the root, nodeid `root` (the wire's FUSE_ROOT_ID, passed in by
 * its one home, impl/protocol/constants.py), on root_fd, which it then owns. */
struct pf_session *pf_session_new(struct pf_export *e, uint64_t root, int root_fd, uint64_t dev,
                                  uint64_t ino, uint32_t kind);
/* Closes every descriptor held and frees the session. */
void pf_session_free(struct pf_session *s);
void pf_lock(struct pf_session *s);
void pf_unlock(struct pf_session *s);

struct pf_node *pf_node_get(struct pf_session *s, uint64_t nodeid);
uint64_t pf_node_by_key(struct pf_session *s, uint64_t dev, uint64_t ino);
/* A new nodeid for fd (owned from now on), one lookup counted. */
uint64_t pf_node_add(struct pf_session *s, int fd, uint64_t dev, uint64_t ino, uint32_t kind);
/* Drops nlookup lookups; at zero the nodeid is gone and its fd closed. The root stays. */
void pf_node_forget(struct pf_session *s, uint64_t nodeid, uint64_t nlookup);
struct pf_handle *pf_handle_get(struct pf_session *s, uint64_t fh);
uint64_t pf_handle_add(struct pf_session *s, int fd, uint64_t dev, uint64_t ino, int flags,
                       int is_dir);
/* Removes the handle and closes its fd (once no I/O holds it); 0, or -EBADF when unknown. */
int pf_handle_remove(struct pf_session *s, uint64_t fh);
/* The handle, kept open for I/O done without the lock (under the lock; NULL when
 * unknown): its fd is neither closed nor its number reused, whatever a RELEASE or a reset
 * does meanwhile, until pf_handle_put (which takes the lock itself). */
struct pf_handle *pf_handle_hold(struct pf_session *s, uint64_t fh);
void pf_handle_put(struct pf_session *s, struct pf_handle *h);
uint64_t pf_nodes(struct pf_session *s);
uint64_t pf_handles(struct pf_session *s);
/* Would n more descriptors pass the export's per-guest cap? */
int pf_over_cap(struct pf_session *s, uint64_t n);
/* Releases every handle and every nodeid but the root (nlookup back to 1); keep_root = 0
 * releases the root too. */
void pf_release_all(struct pf_session *s, int keep_root);
/* The guest's DAX window as granted (window_book.h), changed under the session lock. */
struct wb_book;
struct wb_book *pf_window(struct pf_session *s);
/* One mapping request at a time (the Python dispatcher's and the fast path's): the book
 * and the front-end's window change together. Taken before the session lock. */
void pf_window_lock(struct pf_session *s);
void pf_window_unlock(struct pf_session *s);
/* The n-th live handle's fh (0..pf_handles-1), for listings; 0 past the end. */
uint64_t pf_handle_at(struct pf_session *s, uint64_t n);

#endif
