/* A DAX window's book in C: which file range each window range [start, end) maps, the
 * one record type of a window, kept once by the host per guest (what it granted:
 * session.c) and once by the front-end (what is mapped in its memory). A new range
 * replaces what it overlaps and splits what it covers in part, as mmap(MAP_FIXED) over
 * part of an older mapping does; both pieces of a split keep their file offsets. One
 * entry per range, sorted by start, whatever the length. Not thread-safe: its owner locks.
 */
#ifndef PAGEFS_WINDOW_BOOK_H
#define PAGEFS_WINDOW_BOOK_H

#include <stdint.h>

struct wb_range {
    uint64_t start;
    uint64_t end;
    uint64_t dev;    /* the file: the host's (st_dev, st_ino) of it on either side */
    uint64_t ino;
    uint64_t shift;  /* file offset - window offset (mod 2^64): the same for both pieces */
    int writable;
};

struct wb_book {
    struct wb_range *r;
    uint64_t len;
    uint64_t cap;
};

struct wb_book *wb_new(void);
void wb_free(struct wb_book *b);
/* Maps m, replacing or splitting what it overlaps; `touched` (may be NULL) is cleared and
 * given the ranges m overlapped, whole, so that wb_undo can take the add back.
 * 0, -EINVAL (empty range) or -ENOMEM (the book unchanged). */
int wb_add(struct wb_book *b, const struct wb_range *m, struct wb_book *touched);
/* Takes back a wb_add of m that gave `touched`: the book is as before. */
int wb_undo(struct wb_book *b, const struct wb_range *m, const struct wb_book *touched);
/* 1 when every byte of [start, end) is mapped. */
int wb_covers(const struct wb_book *b, uint64_t start, uint64_t end);
/* Unmaps [start, end): 0, or -EINVAL when not all of it is mapped or end < start (nothing
 * changed). */
int wb_remove(struct wb_book *b, uint64_t start, uint64_t end);
/* Forgets every range (and the memory held). */
void wb_clear(struct wb_book *b);
uint64_t wb_total(const struct wb_book *b);

#endif
