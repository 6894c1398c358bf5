/* The host's C fast path: the frequent FUSE requests (GETATTR, LOOKUP, FORGET,
 * BATCH_FORGET, OPEN, RELEASE, FLUSH, READ, WRITE, SETUPMAPPING, REMOVEMAPPING) served
 * from a popped chain straight against the session's tables (and, for the mappings, the
 * backend channel to the front-end's window), without Python. It serves only what it can answer
 * exactly as the Python dispatcher (dispatch.py, the reference) would: anything else, a
 * malformed request, an unusual flag, every failure (so errnos and their rate-limited
 * log lines stay the dispatcher's), goes back to Python untouched (VQ_SERVE_PASS).
 */
#ifndef PAGEFS_FASTPATH_H
#define PAGEFS_FASTPATH_H

#include <stddef.h>
#include <stdint.h>

struct pf_session;
struct vu_backend_chan;

/* What the dispatcher decided that the fast path must follow; written under the lock. */
struct pf_rules {
    int enabled;         /* 0: every request goes to Python */
    int initialized;     /* FUSE INIT done: before it everything is Python's (EIO) */
    int switching;       /* act as the request's fsuid/fsgid (the daemon is root) */
    int64_t squash_uid;  /* < 0: the header's */
    int64_t squash_gid;
    uint64_t attr_timeout;
    uint64_t entry_timeout;
    uint32_t open_flags; /* FOPEN_* of the cache policy */
    uint64_t served;     /* requests answered here */
    /* SETUPMAPPING and REMOVEMAPPING: the backend channel to the front-end's window
     * (backend_channel.h; NULL: they are Python's), the read-only view read mappings are
     * reopened through (-1: the export's own mount), and whether read mappings get
     * read-write descriptors (--writable-map-fds) */
    struct vu_backend_chan *backend;
    int read_only_root;
    int writable_map_fds;
};

struct pf_rules *pf_rules(struct pf_session *s);

/* The serve function for the transport's queue loop (device_loop.h's vq_serve_fn);
 * ctx is the pf_session. */
struct vq_seg;
int pf_serve_chain(void *ctx, const struct vq_seg *segs, unsigned n_out, unsigned n_all,
                   uint64_t bytes_out, uint64_t bytes_in, uint32_t *written);
/* The same on plain buffers (for the differential test): 1 and *reply_len set when
 * served, 0 when the request is Python's. */
int pf_serve_buffer(struct pf_session *s, const uint8_t *req, size_t len, uint8_t *reply,
                    size_t cap, size_t *reply_len);

#endif
