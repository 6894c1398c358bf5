/* The session's layout, for session.c and fastpath.c alone (cffi sees it opaque). */
#ifndef PAGEFS_SESSION_PRIVATE_H
#define PAGEFS_SESSION_PRIVATE_H

#include <pthread.h>

#include "fastpath.h"
#include "session.h"
#include "window_book.h"

struct pf_session {
    pthread_mutex_t lock;
    struct pf_export *export;
    struct pf_map nodes;
    struct pf_map by_key;
    struct pf_map handles;
    uint64_t root;  /* the root's nodeid: never forgotten, kept by a reset */
    uint64_t next_nodeid;
    uint64_t next_fh;
    struct pf_rules rules;
    struct wb_book window;          /* what the guest was granted, under `lock` */
    pthread_mutex_t window_lock;    /* one mapping request at a time; taken before `lock` */
};

#endif
