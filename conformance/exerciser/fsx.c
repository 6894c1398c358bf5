/*
 * pagefs file exerciser: random reads, writes, truncates, mmap reads and writes and
 * fallocate on one file, every result checked against an in-memory model of what the
 * file must hold. The first departure prints the ops that led to it and exits 1.
 *
 *   fsx [-N ops] [-S seed] [-l max_size] [-o max_op_len] [-L log_len] [-A align] [-M] [-F]
 *       [-q] FILE
 *
 *   -M  no mmap reads or writes     -F  no fallocate (punch hole, zero range, allocate)
 *   -A  every size the file takes is a multiple of align: an op that would end the file
 *       elsewhere first extends it to the next multiple (for a mapper that cannot map a
 *       range past EOF, as QEMU 11.1's DAX window cannot); max_size a multiple of align
 *   -q  print only the summary line and any failure
 *
 * Exit status: 0 all ops held, 1 the file departed from the model (or a syscall the
 * model expects to work failed), 2 bad usage or the file could not be opened.
 *
 * Why each check is what it is:
 * - mmap writes are never msync'ed: a shared mapping and read(2) share one page cache,
 *   so the next pread must already see them (COH-WRITE on one machine).
 * - bytes of the last page past EOF read zero through a mapping (POSIX), and the model
 *   zero-fills every extension, so a stale page left behind by truncate shows.
 * - fallocate modes a file system refuses (EOPNOTSUPP) are dropped once, with a note:
 *   their absence is not a departure, only an unexercised op.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef FALLOC_FL_KEEP_SIZE
#define FALLOC_FL_KEEP_SIZE 0x01
#endif
#ifndef FALLOC_FL_PUNCH_HOLE
#define FALLOC_FL_PUNCH_HOLE 0x02
#endif
#ifndef FALLOC_FL_ZERO_RANGE
#define FALLOC_FL_ZERO_RANGE 0x10
#endif

enum op {
    OP_READ, OP_WRITE, OP_MAPREAD, OP_MAPWRITE, OP_TRUNCATE, OP_PUNCH, OP_ZERO,
    OP_ALLOCATE, OP_FSYNC, OP_REOPEN, OP_CHECKALL, OP_COUNT
};
static const char *op_names[OP_COUNT] = {
    "READ", "WRITE", "MAPREAD", "MAPWRITE", "TRUNCATE", "PUNCH_HOLE", "ZERO_RANGE",
    "ALLOCATE", "FSYNC", "REOPEN", "CHECKALL"
};
/* Relative weights: data ops dominate, the rarer ops shake caches and sizes. */
static const unsigned op_weights[OP_COUNT] = {20, 20, 14, 14, 8, 4, 3, 3, 1, 2, 1};

struct logged {
    uint64_t number;
    enum op op;
    uint64_t offset, length;   /* for TRUNCATE, offset is the new size */
    uint64_t size_before, size_after;
};

static struct {
    const char *path;
    int fd;
    uint64_t ops, seed, max_size, max_op_len, log_len, align;
    int use_mmap, use_falloc, quiet;
    int can_punch, can_zero, can_allocate;
    uint8_t *model;            /* max_size bytes; bytes past size are zero */
    uint8_t *scratch;
    uint64_t size;
    uint64_t rng;
    uint64_t number;           /* the op under way, from 1 */
    struct logged *log;
    uint64_t counts[OP_COUNT];
    long page;
} s;

static sigjmp_buf fault_jump;
static volatile sig_atomic_t fault_signal;

static uint64_t next_random(void)
{
    /* xorshift64*: small, fast, and the same sequence everywhere for one seed. */
    s.rng ^= s.rng >> 12;
    s.rng ^= s.rng << 25;
    s.rng ^= s.rng >> 27;
    return s.rng * 0x2545F4914F6CDD1DULL;
}

static uint64_t below(uint64_t n) { return n ? next_random() % n : 0; }

static void record(enum op op, uint64_t offset, uint64_t length, uint64_t before)
{
    struct logged *entry = &s.log[s.number % s.log_len];
    entry->number = s.number;
    entry->op = op;
    entry->offset = offset;
    entry->length = length;
    entry->size_before = before;
    entry->size_after = s.size;
}

static void print_entry(const struct logged *e, uint64_t bad_offset, int mark)
{
    int touches = 0;
    if (mark) {
        if (e->op == OP_TRUNCATE)
            touches = bad_offset >= e->offset || bad_offset >= e->size_before;
        else
            touches = bad_offset >= e->offset && bad_offset < e->offset + e->length;
    }
    if (e->op == OP_TRUNCATE)
        fprintf(stderr, "  %8" PRIu64 " %-10s to %#" PRIx64 " (size %#" PRIx64 " -> %#"
                PRIx64 ")%s\n", e->number, op_names[e->op], e->offset, e->size_before,
                e->size_after, touches ? "  <- touches the bad byte" : "");
    else
        fprintf(stderr, "  %8" PRIu64 " %-10s %#" PRIx64 " + %#" PRIx64 " (size %#" PRIx64
                " -> %#" PRIx64 ")%s\n", e->number, op_names[e->op], e->offset, e->length,
                e->size_before, e->size_after, touches ? "  <- touches the bad byte" : "");
}

static void print_log(uint64_t bad_offset, int mark)
{
    uint64_t first = s.number > s.log_len ? s.number - s.log_len + 1 : 1;
    fprintf(stderr, "fsx: ops %" PRIu64 "..%" PRIu64 " (seed %" PRIu64 ", file %s):\n", first,
            s.number, s.seed, s.path);
    for (uint64_t n = first; n <= s.number; n++)
        print_entry(&s.log[n % s.log_len], bad_offset, mark);
}

static void __attribute__((noreturn, format(printf, 1, 2))) fail(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "fsx: FAILED at op %" PRIu64 ": ", s.number);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    print_log(0, 0);
    exit(1);
}

/* Compare what the file gave with the model; on a departure, show where and exit. */
static void check(const uint8_t *got, uint64_t offset, uint64_t length, const char *how)
{
    const uint8_t *want = s.model + offset;
    if (memcmp(got, want, length) == 0)
        return;
    uint64_t i = 0;
    while (got[i] == want[i])
        i++;
    uint64_t bad = offset + i, run = 0;
    while (i + run < length && got[i + run] != want[i + run])
        run++;
    fprintf(stderr, "fsx: MISMATCH at op %" PRIu64 " (%s %#" PRIx64 " + %#" PRIx64
            "): first bad byte at %#" PRIx64 ", %" PRIu64 " bad bytes from there, file size %#"
            PRIx64 "\n", s.number, how, offset, length, bad, run, s.size);
    fprintf(stderr, "  expected:");
    for (uint64_t k = i; k < i + 16 && k < length; k++)
        fprintf(stderr, " %02x", want[k]);
    fprintf(stderr, "\n  got:     ");
    for (uint64_t k = i; k < i + 16 && k < length; k++)
        fprintf(stderr, " %02x", got[k]);
    fputc('\n', stderr);
    print_log(bad, 1);
    exit(1);
}

static void check_size(void)
{
    struct stat st;
    if (fstat(s.fd, &st) < 0)
        fail("fstat: %s", strerror(errno));
    if ((uint64_t)st.st_size != s.size) {
        fprintf(stderr, "fsx: MISMATCH at op %" PRIu64 ": file size %#" PRIx64
                ", model %#" PRIx64 "\n", s.number, (uint64_t)st.st_size, s.size);
        print_log(0, 0);
        exit(1);
    }
}

static void set_size(uint64_t size)
{
    if (size < s.size)
        memset(s.model + size, 0, s.size - size);
    s.size = size;
}

static void read_all(uint8_t *buf, uint64_t offset, uint64_t length, const char *what)
{
    uint64_t done = 0;
    while (done < length) {
        ssize_t n = pread(s.fd, buf + done, length - done, offset + done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            fail("%s: pread %#" PRIx64 " + %#" PRIx64 ": %s", what, offset + done,
                 length - done, strerror(errno));
        if (n == 0)
            fail("%s: pread %#" PRIx64 " + %#" PRIx64 " hit EOF, model size %#" PRIx64, what,
                 offset + done, length - done, s.size);
        done += (uint64_t)n;
    }
}

static void do_read(uint64_t offset, uint64_t length)
{
    if (s.size == 0)
        return;
    offset %= s.size;
    if (offset + length > s.size)
        length = s.size - offset;
    read_all(s.scratch, offset, length, "READ");
    check(s.scratch, offset, length, "READ");
    /* One byte past EOF must read as EOF. */
    ssize_t n = pread(s.fd, s.scratch, 1, s.size);
    if (n != 0)
        fail("READ at EOF %#" PRIx64 " returned %zd, expected 0", s.size, n);
}

static void fill(uint64_t offset, uint64_t length)
{
    /* Bytes tagged by op number, so a stale byte hints which write it came from. */
    for (uint64_t i = 0; i < length; i++)
        s.scratch[i] = (uint8_t)((s.number & 0x3f) << 2 | (next_random() & 0x3));
    memcpy(s.model + offset, s.scratch, length);
}

/* With -A: extend the file to the multiple of align at or after `end` before an op
 * would end it at `end` (the model's bytes past the size are already zero). */
static void grow_aligned(uint64_t end, const char *what)
{
    if (!s.align || end <= s.size)
        return;
    uint64_t size = (end + s.align - 1) / s.align * s.align;
    if (ftruncate(s.fd, (off_t)size) < 0)
        fail("%s: ftruncate to %#" PRIx64 ": %s", what, size, strerror(errno));
    s.size = size;
}

static void do_write(uint64_t offset, uint64_t length)
{
    grow_aligned(offset + length, "WRITE");
    fill(offset, length);
    uint64_t done = 0;
    while (done < length) {
        ssize_t n = pwrite(s.fd, s.scratch + done, length - done, offset + done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            fail("WRITE: pwrite %#" PRIx64 " + %#" PRIx64 ": %s", offset + done,
                 length - done, n < 0 ? strerror(errno) : "wrote nothing");
        done += (uint64_t)n;
    }
    if (offset + length > s.size)
        s.size = offset + length;
}

static void on_fault(int sig)
{
    fault_signal = sig;
    siglongjmp(fault_jump, 1);
}

static uint8_t *map(uint64_t start, uint64_t length, int prot, const char *what)
{
    void *p = mmap(NULL, length, prot, MAP_SHARED, s.fd, (off_t)start);
    if (p == MAP_FAILED)
        fail("%s: mmap %#" PRIx64 " + %#" PRIx64 ": %s", what, start, length, strerror(errno));
    return p;
}

static void do_mapread(uint64_t offset, uint64_t want_length)
{
    volatile uint64_t length = want_length;   /* read again after a fault's longjmp */
    if (s.size == 0)
        return;
    offset %= s.size;
    if (offset + length > s.size)
        length = s.size - offset;
    uint64_t start = offset & ~(uint64_t)(s.page - 1);
    /* Map to the end of the page holding the last byte, so the tail past EOF is seen too. */
    uint64_t end = (offset + length + s.page - 1) & ~(uint64_t)(s.page - 1);
    uint8_t *p = map(start, end - start, PROT_READ, "MAPREAD");
    if (sigsetjmp(fault_jump, 1)) {
        munmap(p, end - start);
        fail("MAPREAD %#" PRIx64 " + %#" PRIx64 ": signal %d inside the file",
             offset, length, (int)fault_signal);
    }
    memcpy(s.scratch, p + (offset - start), length);
    uint64_t tail = 0;
    if (end > s.size) {
        /* Bytes past EOF in the last page: must read zero. */
        for (uint64_t k = s.size; k < end; k++)
            if (p[k - start] != 0) {
                tail = k;
                break;
            }
    }
    munmap(p, end - start);
    check(s.scratch, offset, length, "MAPREAD");
    if (tail) {
        fprintf(stderr, "fsx: MISMATCH at op %" PRIu64 ": mapped byte %#" PRIx64
                " past EOF %#" PRIx64 " is not zero\n", s.number, tail, s.size);
        print_log(tail, 1);
        exit(1);
    }
}

static void do_mapwrite(uint64_t offset, uint64_t length)
{
    uint64_t before = s.size;
    grow_aligned(offset + length, "MAPWRITE");
    if (offset + length > s.size) {
        if (ftruncate(s.fd, (off_t)(offset + length)) < 0)
            fail("MAPWRITE: ftruncate to %#" PRIx64 ": %s", offset + length, strerror(errno));
        s.size = offset + length;
    }
    uint64_t start = offset & ~(uint64_t)(s.page - 1);
    uint64_t span = offset + length - start;
    uint8_t *p = map(start, span, PROT_READ | PROT_WRITE, "MAPWRITE");
    fill(offset, length);
    if (sigsetjmp(fault_jump, 1)) {
        munmap(p, span);
        fail("MAPWRITE %#" PRIx64 " + %#" PRIx64 " (size %#" PRIx64 " -> %#" PRIx64
             "): signal %d inside the file", offset, length, before, s.size,
             (int)fault_signal);
    }
    memcpy(p + (offset - start), s.scratch, length);
    munmap(p, span);   /* no msync: read(2) must see the pages as they are */
}

static void do_truncate(uint64_t size)
{
    if (ftruncate(s.fd, (off_t)size) < 0)
        fail("TRUNCATE to %#" PRIx64 ": %s", size, strerror(errno));
    set_size(size);
}

/* fallocate in one mode; 0 when the file system does not offer the mode (then dropped). */
static int falloc(int mode, uint64_t offset, uint64_t length, int *offered)
{
    if (fallocate(s.fd, mode, (off_t)offset, (off_t)length) == 0)
        return 1;
    if (errno == EOPNOTSUPP || errno == ENOSYS) {
        *offered = 0;
        if (!s.quiet)
            printf("fsx: fallocate mode %#x not offered here (%s); dropped\n", mode,
                   strerror(errno));
        return 0;
    }
    fail("fallocate mode %#x %#" PRIx64 " + %#" PRIx64 ": %s", mode, offset, length,
         strerror(errno));
}

static void do_punch(uint64_t offset, uint64_t length)
{
    if (s.size == 0 || !falloc(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset % s.size,
                               length, &s.can_punch))
        return;
    offset %= s.size;
    uint64_t end = offset + length < s.size ? offset + length : s.size;
    memset(s.model + offset, 0, end - offset);
}

static void do_zero(uint64_t offset, uint64_t length)
{
    grow_aligned(offset + length, "ZERO_RANGE");
    if (!falloc(FALLOC_FL_ZERO_RANGE, offset, length, &s.can_zero))
        return;
    memset(s.model + offset, 0, length);
    if (offset + length > s.size)
        s.size = offset + length;
}

static void do_allocate(uint64_t offset, uint64_t length)
{
    grow_aligned(offset + length, "ALLOCATE");
    if (!falloc(0, offset, length, &s.can_allocate))
        return;
    if (offset + length > s.size)
        s.size = offset + length;   /* the model's bytes past the old size are already 0 */
}

static void open_file(int flags)
{
    s.fd = open(s.path, O_RDWR | flags, 0644);
    if (s.fd < 0) {
        fprintf(stderr, "fsx: cannot open %s: %s\n", s.path, strerror(errno));
        exit(s.number ? 1 : 2);
    }
}

static void do_checkall(void)
{
    uint8_t *whole = malloc(s.size ? s.size : 1);
    if (!whole)
        fail("out of memory");
    read_all(whole, 0, s.size, "CHECKALL");
    uint64_t size = s.size;
    if (memcmp(whole, s.model, size) != 0) {
        /* Report through check(), which needs the bytes in scratch-sized pieces. */
        for (uint64_t at = 0; at < size; at += s.max_op_len) {
            uint64_t n = size - at < s.max_op_len ? size - at : s.max_op_len;
            memcpy(s.scratch, whole + at, n);
            check(s.scratch, at, n, "CHECKALL");
        }
    }
    free(whole);
}

static enum op choose(void)
{
    unsigned total = 0, weights[OP_COUNT];
    for (int i = 0; i < OP_COUNT; i++) {
        int on = 1;
        if ((i == OP_MAPREAD || i == OP_MAPWRITE) && !s.use_mmap)
            on = 0;
        if ((i == OP_PUNCH && !s.can_punch) || (i == OP_ZERO && !s.can_zero) ||
            (i == OP_ALLOCATE && !s.can_allocate))
            on = 0;
        weights[i] = on ? op_weights[i] : 0;
        total += weights[i];
    }
    unsigned pick = (unsigned)below(total);
    for (int i = 0; i < OP_COUNT; i++) {
        if (pick < weights[i])
            return (enum op)i;
        pick -= weights[i];
    }
    return OP_READ;
}

static uint64_t number_arg(const char *text, const char *what)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 0);
    uint64_t scale = 1;
    if (*end == 'k' || *end == 'K') scale = 1ULL << 10, end++;
    else if (*end == 'm' || *end == 'M') scale = 1ULL << 20, end++;
    else if (*end == 'g' || *end == 'G') scale = 1ULL << 30, end++;
    if (errno || *end || end == text || text[0] == '-') {
        fprintf(stderr, "fsx: %s must be a number (with k, m or g), not '%s'\n", what, text);
        exit(2);
    }
    return (uint64_t)v * scale;
}

static void usage(void)
{
    fprintf(stderr, "usage: fsx [-N ops] [-S seed] [-l max_size] [-o max_op_len] "
            "[-L log_len] [-A align] [-M] [-F] [-q] FILE\n");
    exit(2);
}

int main(int argc, char **argv)
{
    s.ops = 10000;
    s.seed = 1;
    s.max_size = 256 << 10;
    s.max_op_len = 64 << 10;
    s.log_len = 64;
    s.use_mmap = s.use_falloc = 1;
    int c;
    while ((c = getopt(argc, argv, "N:S:l:o:L:A:MFqh")) != -1) {
        switch (c) {
        case 'N': s.ops = number_arg(optarg, "-N ops"); break;
        case 'S': s.seed = number_arg(optarg, "-S seed"); break;
        case 'l': s.max_size = number_arg(optarg, "-l max_size"); break;
        case 'o': s.max_op_len = number_arg(optarg, "-o max_op_len"); break;
        case 'L': s.log_len = number_arg(optarg, "-L log_len"); break;
        case 'A': s.align = number_arg(optarg, "-A align"); break;
        case 'M': s.use_mmap = 0; break;
        case 'F': s.use_falloc = 0; break;
        case 'q': s.quiet = 1; break;
        default: usage();
        }
    }
    if (optind != argc - 1)
        usage();
    if (s.max_size == 0 || s.max_op_len == 0 || s.log_len == 0) {
        fprintf(stderr, "fsx: -l, -o and -L must be above 0\n");
        exit(2);
    }
    if (s.align && s.max_size % s.align) {
        fprintf(stderr, "fsx: -l max_size must be a multiple of -A align\n");
        exit(2);
    }
    if (s.max_op_len > s.max_size)
        s.max_op_len = s.max_size;
    s.path = argv[optind];
    s.page = sysconf(_SC_PAGESIZE);
    s.can_punch = s.can_zero = s.can_allocate = s.use_falloc;
    s.rng = s.seed * 0x9E3779B97F4A7C15ULL + 1;   /* never 0: xorshift would stay there */
    s.model = calloc(1, s.max_size);
    s.scratch = malloc(s.max_size);
    s.log = calloc(s.log_len, sizeof *s.log);
    if (!s.model || !s.scratch || !s.log) {
        fprintf(stderr, "fsx: cannot allocate the model of %" PRIu64 " bytes\n", s.max_size);
        exit(2);
    }
    struct sigaction sa = {.sa_handler = on_fault};
    sigaction(SIGBUS, &sa, NULL);
    sigaction(SIGSEGV, &sa, NULL);
    open_file(O_CREAT | O_TRUNC);

    for (s.number = 1; s.number <= s.ops; s.number++) {
        enum op op = choose();
        uint64_t offset = below(s.max_size);
        uint64_t length = 1 + below(s.max_op_len);
        if (offset + length > s.max_size)
            length = s.max_size - offset;
        uint64_t before = s.size;
        if (op == OP_TRUNCATE)
            offset = s.align ? below(s.max_size / s.align + 1) * s.align
                             : below(s.max_size + 1);
        record(op, offset, length, before);
        switch (op) {
        case OP_READ: do_read(offset, length); break;
        case OP_WRITE: do_write(offset, length); break;
        case OP_MAPREAD: do_mapread(offset, length); break;
        case OP_MAPWRITE: do_mapwrite(offset, length); break;
        case OP_TRUNCATE: do_truncate(offset); break;
        case OP_PUNCH: do_punch(offset, length); break;
        case OP_ZERO: do_zero(offset, length); break;
        case OP_ALLOCATE: do_allocate(offset, length); break;
        case OP_FSYNC:
            if (fsync(s.fd) < 0)
                fail("FSYNC: %s", strerror(errno));
            break;
        case OP_REOPEN:
            if (close(s.fd) < 0)
                fail("REOPEN: close: %s", strerror(errno));
            open_file(0);
            break;
        case OP_CHECKALL: do_checkall(); break;
        default: break;
        }
        record(op, offset, length, before);   /* again, with the size after */
        if (!((op == OP_PUNCH && !s.can_punch) || (op == OP_ZERO && !s.can_zero) ||
              (op == OP_ALLOCATE && !s.can_allocate)))
            s.counts[op]++;
        check_size();
    }
    s.number = s.ops;
    do_checkall();
    if (close(s.fd) < 0)
        fail("final close: %s", strerror(errno));
    printf("fsx: %" PRIu64 " ops held (seed %" PRIu64 ", max size %#" PRIx64 ",%s mmap %s,"
           " fallocate %s):", s.ops, s.seed, s.max_size, s.align ? " sizes aligned," : "",
           s.use_mmap ? "on" : "off",
           !s.use_falloc ? "off" : (s.can_punch || s.can_zero || s.can_allocate)
           ? "on" : "not offered");
    for (int i = 0; i < OP_COUNT; i++)
        if (s.counts[i])
            printf(" %s %" PRIu64, op_names[i], s.counts[i]);
    printf("\n");
    return 0;
}
