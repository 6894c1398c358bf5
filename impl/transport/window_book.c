/* The window's book; see window_book.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "window_book.h"

struct wb_book *wb_new(void) { return calloc(1, sizeof(struct wb_book)); }

void wb_free(struct wb_book *b) {
    if (b != NULL) {
        free(b->r);
        free(b);
    }
}

void wb_clear(struct wb_book *b) {
    free(b->r);
    memset(b, 0, sizeof *b);
}

static int reserve(struct wb_book *b, uint64_t len) {
    if (len <= b->cap)
        return 0;
    uint64_t cap = b->cap ? b->cap : 8;
    while (cap < len)
        cap *= 2;
    struct wb_range *r = realloc(b->r, cap * sizeof *r);
    if (r == NULL)
        return -ENOMEM;
    b->r = r;
    b->cap = cap;
    return 0;
}

/* The first range ending after `at` (ranges are sorted and disjoint: ends sort too). */
static uint64_t first_after(const struct wb_book *b, uint64_t at) {
    uint64_t lo = 0, hi = b->len;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (b->r[mid].end > at)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

/* The ranges sharing a byte with [start, end): [*first, *last). */
static void overlapping(const struct wb_book *b, uint64_t start, uint64_t end, uint64_t *first,
                        uint64_t *last) {
    uint64_t i = first_after(b, start);
    *first = i;
    while (i < b->len && b->r[i].start < end)
        i++;
    *last = i;
}

/* Puts `count` ranges (from `put`) where [first, last) was. Room must be reserved. */
static void splice(struct wb_book *b, uint64_t first, uint64_t last, const struct wb_range *put,
                   uint64_t count) {
    memmove(&b->r[first + count], &b->r[last], (b->len - last) * sizeof *b->r);
    memcpy(&b->r[first], put, count * sizeof *put);
    b->len = b->len - (last - first) + count;
}

/* Sets [m->start, m->end) to m (m NULL: unsets it), keeping what lies outside. */
static int carve(struct wb_book *b, uint64_t start, uint64_t end, const struct wb_range *m) {
    uint64_t first, last;
    overlapping(b, start, end, &first, &last);
    struct wb_range put[3];
    uint64_t n = 0;
    if (first < last && b->r[first].start < start) {
        put[n] = b->r[first];
        put[n++].end = start;
    }
    if (m != NULL)
        put[n++] = *m;
    if (first < last && b->r[last - 1].end > end) {
        put[n] = b->r[last - 1];
        put[n++].start = end;
    }
    if (reserve(b, b->len - (last - first) + n) != 0)
        return -ENOMEM;
    splice(b, first, last, put, n);
    return 0;
}

int wb_add(struct wb_book *b, const struct wb_range *m, struct wb_book *touched) {
    if (m->start >= m->end)
        return -EINVAL;
    uint64_t first, last;
    overlapping(b, m->start, m->end, &first, &last);
    if (touched != NULL) {
        if (reserve(touched, last - first) != 0)
            return -ENOMEM;
        memcpy(touched->r, &b->r[first], (last - first) * sizeof *b->r);
        touched->len = last - first;
    }
    return carve(b, m->start, m->end, m);
}

int wb_undo(struct wb_book *b, const struct wb_range *m, const struct wb_book *touched) {
    int r = carve(b, m->start, m->end, NULL);
    for (uint64_t k = 0; r == 0 && touched != NULL && k < touched->len; k++)
        r = carve(b, touched->r[k].start, touched->r[k].end, &touched->r[k]);
    return r;
}

int wb_covers(const struct wb_book *b, uint64_t start, uint64_t end) {
    uint64_t first, last, at = start;
    overlapping(b, start, end, &first, &last);
    for (uint64_t i = first; i < last; i++) {
        if (b->r[i].start > at)
            return 0;
        at = b->r[i].end;
    }
    return at >= end;
}

int wb_remove(struct wb_book *b, uint64_t start, uint64_t end) {
    /* a reversed range would carve pieces that overlap (wb_covers holds for it) */
    if (end < start || !wb_covers(b, start, end))
        return -EINVAL;
    return carve(b, start, end, NULL);
}

uint64_t wb_total(const struct wb_book *b) {
    uint64_t total = 0;
    for (uint64_t i = 0; i < b->len; i++)
        total += b->r[i].end - b->r[i].start;
    return total;
}
