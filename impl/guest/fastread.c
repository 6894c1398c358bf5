/*
 * The window's books as C reads them, and the read that uses them: READ-BOUND's
 * common case (every range the read and its probe touch is mapped already) in one call,
 * with no Python in between.
 *
 * Compiled after safemem.c, into the same module: it uses safe_copy() and page_size.
 *
 * The books are written only by the window manager (window.py), under its locks, and
 * read here with none. Each window range has a generation, a sequence count: even while
 * the range maps (owner, index) - the inode and the file range index it holds -, odd
 * while it is free or changing. A mapping is published by writing the owner, then making
 * the generation even (release); it is withdrawn by making the generation odd (seq_cst)
 * BEFORE the REMOVEMAPPING that unmaps it is sent. A reader takes the generation
 * (acquire), checks the owner, probes and copies, and then checks the generation again
 * after a full fence: if it changed, the range may have been unmapped or mapped to
 * another file during the copy, and the read declines (the buffer's contents are then
 * overwritten by the general path). A range found through a stale or torn slot fails
 * the owner check. So a read this path returns was copied entirely from pages that
 * held this inode's file range the whole time.
 *
 * A hash table finds the range of (inode, file range index): linear probing over a
 * bounded stretch of slots, which a reader scans whole (a removal leaves a hole, not a
 * tombstone). A mapping that finds its stretch full is simply not entered: it is still
 * on the window's books, and the general path serves it.
 *
 * The fast read also sets the range's "used" byte, the reference bit that reclaim
 * reads in place of a move to the end of its LRU list (a CLOCK's second chance), and
 * records where the reader's read ended, so that a sequential read entering a new range
 * is left to the general path, which maps the next range ahead (unless it is mapped).
 */
#include <sched.h>
#include <stdlib.h>
#include <time.h>

#define BOOKS_STRETCH 8        /* slots a key may sit in, from its hash on */
#define BOOKS_READ_RANGES 8    /* ranges one fast read may touch, its probe included */

struct safemem_books {
    uintptr_t base;            /* the window's address */
    unsigned shift;            /* log2 of the range size */
    uint32_t ranges;
    uint32_t slot_mask;        /* slots - 1 (a power of two) */
    uint64_t *gen;             /* per range: even while it maps (owner, index) */
    uint64_t *owner;           /* per range: the nodeid */
    uint64_t *index;           /* per range: the file range index */
    uint8_t *used;             /* per range: read by a fast read since reclaim looked */
    uint32_t *slots;           /* range + 1, or 0 for none */
    uint32_t closed;           /* the window is closed: its memory may be gone */
};

struct safemem_reader {
    struct safemem_books *books;   /* NULL: every read takes the general path */
    uint64_t nodeid;
    int64_t last_end;              /* where this reader's last read ended */
};

static uint32_t books_hash(const struct safemem_books *b, uint64_t owner, uint64_t index)
{
    uint64_t h = (owner * 0x9E3779B97F4A7C15ull) ^ (index * 0xC2B2AE3D27D4EB4Full);
    return (uint32_t)(h ^ (h >> 29)) & b->slot_mask;
}

struct safemem_books *safemem_books_new(uintptr_t base, uint32_t ranges, unsigned shift)
{
    struct safemem_books *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    uint32_t slots = 16;
    while (slots < 4 * ranges)
        slots <<= 1;
    b->base = base;
    b->shift = shift;
    b->ranges = ranges;
    b->slot_mask = slots - 1;
    b->gen = calloc(ranges, sizeof *b->gen);
    b->owner = calloc(ranges, sizeof *b->owner);
    b->index = calloc(ranges, sizeof *b->index);
    b->used = calloc(ranges, 1);
    b->slots = calloc(slots, sizeof *b->slots);
    if (!b->gen || !b->owner || !b->index || !b->used || !b->slots) {
        free(b->gen), free(b->owner), free(b->index), free(b->used), free(b->slots);
        free(b);
        return NULL;
    }
    for (uint32_t r = 0; r < ranges; r++)
        b->gen[r] = 1;         /* odd: maps nothing */
    return b;
}

void safemem_books_free(struct safemem_books *b)
{
    if (b) {
        free(b->gen), free(b->owner), free(b->index), free(b->used), free(b->slots);
        free(b);
    }
}

/* Range r now maps file range `index` of `owner` (its SETUPMAPPING was answered).
 * -EINVAL if r is out of bounds or already published. */
int safemem_books_map(struct safemem_books *b, uint32_t r, uint64_t owner, uint64_t index)
{
    if (r >= b->ranges || !(LOAD_RLX(&b->gen[r]) & 1))
        return -EINVAL;
    STORE_RLX(&b->owner[r], owner);
    STORE_RLX(&b->index[r], index);
    STORE_RLX(&b->used[r], 0);
    STORE_REL(&b->gen[r], LOAD_RLX(&b->gen[r]) + 1);
    uint32_t h = books_hash(b, owner, index);
    for (uint32_t i = 0; i < BOOKS_STRETCH; i++) {
        uint32_t *slot = &b->slots[(h + i) & b->slot_mask];
        if (LOAD_RLX(slot) == 0) {
            STORE_REL(slot, r + 1);
            break;
        }
    }
    return 0;
}

/* Range r is withdrawn: from here on no fast read returns data copied from it. Called
 * before the REMOVEMAPPING is sent. -EINVAL if r is out of bounds or not published. */
int safemem_books_unmap(struct safemem_books *b, uint32_t r)
{
    if (r >= b->ranges || (LOAD_RLX(&b->gen[r]) & 1))
        return -EINVAL;
    __atomic_add_fetch(&b->gen[r], 1, __ATOMIC_SEQ_CST);
    uint32_t h = books_hash(b, LOAD_RLX(&b->owner[r]), LOAD_RLX(&b->index[r]));
    for (uint32_t i = 0; i < BOOKS_STRETCH; i++) {
        uint32_t *slot = &b->slots[(h + i) & b->slot_mask];
        if (LOAD_RLX(slot) == r + 1)
            STORE_RLX(slot, 0);
    }
    return 0;
}

/* The window is closing: from here on no read through these books touches its memory. */
void safemem_books_close(struct safemem_books *b)
{
    __atomic_store_n(&b->closed, 1, __ATOMIC_SEQ_CST);
}

/* The ranges read by fast reads since the last call, into out[0..max); their marks are
 * cleared. Returns how many. */
uint32_t safemem_books_used(struct safemem_books *b, uint32_t *out, uint32_t max)
{
    uint32_t n = 0;
    for (uint32_t r = 0; r < b->ranges && n < max; r++)
        if (__atomic_exchange_n(&b->used[r], 0, __ATOMIC_RELAXED))
            out[n++] = r;
    return n;
}

/* The range holding file range `index` of `owner`, with its generation; 0 if none is
 * published. */
static int books_find(const struct safemem_books *b, uint64_t owner, uint64_t index,
                      uint32_t *range, uint64_t *gen)
{
    uint32_t h = books_hash(b, owner, index);
    for (uint32_t i = 0; i < BOOKS_STRETCH; i++) {
        uint32_t v = LOAD_ACQ(&b->slots[(h + i) & b->slot_mask]);
        if (v == 0 || v > b->ranges)
            continue;
        uint64_t g = LOAD_ACQ(&b->gen[v - 1]);
        if ((g & 1) || LOAD_RLX(&b->owner[v - 1]) != owner ||
            LOAD_RLX(&b->index[v - 1]) != index)
            continue;
        *range = v - 1;
        *gen = g;
        return 1;
    }
    return 0;
}

/* Read n bytes at file offset `offset` of the reader's inode into dst, if every range
 * the read and its READ-BOUND probe (the first page boundary at or after its end) touch
 * is mapped, and the probe loads: returns n. Otherwise -1, and the caller takes the
 * general path (which asks the size, maps, or goes by READ): a miss, a probe that
 * faults (the file ends before it), a fault during the copy (the host truncated), a
 * range withdrawn meanwhile, an empty or negative request, or a sequential read that
 * enters a new range while the range after is not mapped (the general path maps it
 * ahead). */
int64_t safemem_pread(struct safemem_reader *rd, char *dst, size_t n, int64_t offset)
{
    const struct safemem_books *b = rd->books;
    if (!b || n == 0 || offset < 0 || n > (uint64_t)INT64_MAX - (uint64_t)offset)
        return -1;
    if (install_once() != 0)
        return -1;
    const uint64_t page = page_size;
    const unsigned shift = b->shift;
    const uint64_t range_mask = ((uint64_t)1 << shift) - 1;
    const uint64_t start = (uint64_t)offset, end = start + n;
    const uint64_t probe = (end + page - 1) & ~(page - 1);
    const uint64_t first = start >> shift, last = probe >> shift;
    if (last - first >= BOOKS_READ_RANGES)
        return -1;
    uint32_t range[BOOKS_READ_RANGES];
    uint64_t gen[BOOKS_READ_RANGES];
    /* A sequential read entering a new range, when the range the general path would map
     * ahead (DataPath._map_ahead: the one after the range holding `end`) is not mapped. */
    if (offset == LOAD_RLX(&rd->last_end) && ((start - 1) >> shift) != ((end - 1) >> shift) &&
        !books_find(b, rd->nodeid, (end >> shift) + 1, &range[0], &gen[0]))
        return -1;
    const uint32_t count = (uint32_t)(last - first + 1);
    for (uint32_t i = 0; i < count; i++)
        if (!books_find(b, rd->nodeid, first + i, &range[i], &gen[i]))
            return -1;
#define AT(pos) (b->base + ((uintptr_t)range[((pos) >> shift) - first] << shift) + \
                 ((pos) & range_mask))
    char byte;
    if (safe_copy(&byte, (const char *)AT(probe), 1, 1) != 1)
        return -1;
    for (uint64_t pos = start; pos < end;) {
        size_t piece = (size_t)((range_mask + 1) - (pos & range_mask));
        if (piece > end - pos)
            piece = (size_t)(end - pos);
        if (safe_copy(dst + (pos - start), (const char *)AT(pos), piece, 1) != piece)
            return -1;
        pos += piece;
    }
#undef AT
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    for (uint32_t i = 0; i < count; i++)
        if (LOAD_RLX(&b->gen[range[i]]) != gen[i])
            return -1;
    for (uint32_t i = 0; i < count; i++)
        STORE_RLX(&b->used[range[i]], 1);
    STORE_RLX(&rd->last_end, (int64_t)end);
    return (int64_t)n;
}

/* A user's Mapping: the window ranges it pins (never reclaimed while it is open), so its
 * reads need no lookup and no generation check. Every access to its memory, C's and
 * the Python general path's, is made between safemem_span_enter and _leave; close
 * waits for those in progress before the pins are released, since the range may then be
 * unmapped or map another file at once. */
struct safemem_span {
    const struct safemem_books *books;  /* for `closed` */
    uint64_t length;            /* bytes mapped */
    uint64_t first_within;      /* where the mapping starts in its first range */
    const uintptr_t *addresses; /* the window address of each pinned range */
    uint32_t count;             /* how many; 0 once the mapping is closed */
    uint32_t users;             /* accesses in progress */
};

/* safemem_span_read's copy, between enter and leave. */
static int64_t span_copy(const struct safemem_span *s, char *dst, size_t n, uint64_t position)
{
    const unsigned shift = s->books->shift;
    const uint64_t range_mask = ((uint64_t)1 << shift) - 1;
    uint64_t at = s->first_within + position, done = 0;
    while (done < n) {
        size_t piece = (size_t)((range_mask + 1) - (at & range_mask));
        if (piece > n - done)
            piece = (size_t)(n - done);
        const char *src = (const char *)(s->addresses[at >> shift] + (at & range_mask));
        if (safe_copy(dst + done, src, piece, 1) != piece)
            return -1;
        done += piece;
        at += piece;
    }
    return (int64_t)n;
}

/* An access begins: 1, or 0 (none counted) if the mapping is closed. Sequentially
 * consistent on both sides with safemem_span_close: either close sees this user, or this
 * user sees the mapping closed. */
int safemem_span_enter(struct safemem_span *s)
{
    __atomic_add_fetch(&s->users, 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&s->count, __ATOMIC_SEQ_CST) != 0)
        return 1;
    __atomic_sub_fetch(&s->users, 1, __ATOMIC_RELEASE);
    return 0;
}

void safemem_span_leave(struct safemem_span *s)
{
    __atomic_sub_fetch(&s->users, 1, __ATOMIC_RELEASE);
}

/* Close the span: no access begins from here on, and those in progress have ended when
 * this returns (each is one bounded copy, fault-contained, or a Python path that waits
 * at most for one request; called without the GIL, so those can finish). */
void safemem_span_close(struct safemem_span *s)
{
    __atomic_store_n(&s->count, 0, __ATOMIC_SEQ_CST);
    for (unsigned spins = 0; __atomic_load_n(&s->users, __ATOMIC_SEQ_CST) != 0; spins++) {
        if (spins < 64) {
            sched_yield();
        } else {
            struct timespec pause = {0, 50 * 1000};
            nanosleep(&pause, NULL);
        }
    }
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
}

/* Copy n bytes from `position` of the mapping into dst: returns n, or -1 when it is not
 * that simple (closed, out of bounds, a fault: the host truncated), and the caller's
 * general path says what happened. */
int64_t safemem_span_read(struct safemem_span *s, char *dst, size_t n, int64_t position)
{
    if (position < 0 || (uint64_t)position > s->length || n > s->length - (uint64_t)position)
        return -1;
    if (!safemem_span_enter(s))
        return -1;
    int64_t done = -1;
    if (!LOAD_ACQ(&s->books->closed))
        done = span_copy(s, dst, n, (uint64_t)position);
    safemem_span_leave(s);
    return done;
}
