/* pagefs-agent: runs inside a test guest and performs file-system calls on the host's behalf.
 *
 * The host's harness (conformance/vm/agent.py) sends one request at a time over a
 * virtio-serial port and waits for its reply. A message is a list of byte strings:
 *   u32 count, then count x (u32 length, bytes)      (little-endian)
 * A request is [operation, arguments...]; integers travel as decimal text. A reply is
 * [status, results...] where status is "0" or the errno the call failed with, so every
 * answer comes from the guest kernel, never from this program's own judgement.
 *
 * Guest memory is a "window": a PROT_NONE reservation into which file ranges are mapped
 * MAP_SHARED|MAP_FIXED, as the host-side suite's window is; loads and stores that fault
 * (SIGBUS past end of file, SIGSEGV on an unmapped range) end that access with EFAULT.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_FIELDS 64
#define MAX_MESSAGE (64u << 20)

struct field { uint32_t len; char *data; };
struct message { uint32_t count; struct field f[MAX_FIELDS]; };

static int port = -1;

/* ---- framing ---------------------------------------------------------------------- */

static int read_full(void *buf, size_t n) {
    char *p = buf;
    while (n) {
        ssize_t r = read(port, p, n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        p += r; n -= (size_t)r;
    }
    return 0;
}

static int write_full(const void *buf, size_t n) {
    const char *p = buf;
    while (n) {
        ssize_t r = write(port, p, n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        p += r; n -= (size_t)r;
    }
    return 0;
}

static int receive(struct message *m) {
    if (read_full(&m->count, 4) || m->count == 0 || m->count > MAX_FIELDS) return -1;
    for (uint32_t i = 0; i < m->count; i++) {
        if (read_full(&m->f[i].len, 4) || m->f[i].len > MAX_MESSAGE) return -1;
        m->f[i].data = malloc(m->f[i].len + 1);  /* NUL-terminated: names and numbers */
        if (!m->f[i].data || read_full(m->f[i].data, m->f[i].len)) return -1;
        m->f[i].data[m->f[i].len] = 0;
    }
    return 0;
}

/* A reply is built up in one buffer and sent whole. */
static char *out; static size_t out_len, out_cap; static uint32_t out_count;

static void put(const void *data, uint32_t len) {
    if (out_len + 4 + len > out_cap) {
        out_cap = (out_len + 4 + len) * 2;
        out = realloc(out, out_cap);
        if (!out) _exit(3);
    }
    memcpy(out + out_len, &len, 4);
    memcpy(out + out_len + 4, data, len);
    out_len += 4 + len;
    out_count++;
}

static void put_int(long long v) {
    char s[32];
    put(s, (uint32_t)snprintf(s, sizeof s, "%lld", v));
}

static void begin(int status) { out_len = 4; out_count = 0; put_int(status); }

static void send_reply(void) {
    memcpy(out, &out_count, 4);
    if (write_full(out, out_len)) _exit(2);
}

/* ---- guest memory ----------------------------------------------------------------- */

static char *window; static size_t window_size;
static sigjmp_buf fault_jump; static volatile sig_atomic_t guarding;

static void on_fault(int sig) {
    if (guarding) siglongjmp(fault_jump, 1);
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Copy with faults contained: 0, or EFAULT when the access faulted. */
static int guarded_copy(void *dst, const void *src, size_t n) {
    if (sigsetjmp(fault_jump, 1)) { guarding = 0; return EFAULT; }
    guarding = 1;
    memcpy(dst, src, n);
    guarding = 0;
    return 0;
}

static int in_window(long long off, long long len) {
    return window && off >= 0 && len >= 0 && (size_t)(off + len) <= window_size;
}

/* ---- operations ------------------------------------------------------------------- */

static long long num(struct message *m, uint32_t i) { return strtoll(m->f[i].data, 0, 10); }
static const char *str(struct message *m, uint32_t i) { return m->f[i].data; }

static void put_stat(const struct stat *st) {
    put_int(st->st_mode); put_int((long long)st->st_ino); put_int((long long)st->st_dev);
    put_int((long long)st->st_nlink); put_int(st->st_uid); put_int(st->st_gid);
    put_int(st->st_size);
    put_int(st->st_atim.tv_sec * 1000000000LL + st->st_atim.tv_nsec);
    put_int(st->st_mtim.tv_sec * 1000000000LL + st->st_mtim.tv_nsec);
    put_int(st->st_ctim.tv_sec * 1000000000LL + st->st_ctim.tv_nsec);
    put_int(st->st_blksize); put_int(st->st_blocks); put_int((long long)st->st_rdev);
}

static void op_readdir(int fd) {
    char buf[32768];
    struct linux_dirent64 { uint64_t ino; int64_t off; unsigned short reclen;
                            unsigned char type; char name[]; };
    if (lseek(fd, 0, SEEK_SET) < 0) { begin(errno); return; }
    begin(0);
    for (;;) {
        long n = syscall(SYS_getdents64, fd, buf, sizeof buf);
        if (n < 0) { begin(errno); return; }
        if (n == 0) return;
        for (long pos = 0; pos < n;) {
            struct linux_dirent64 *d = (void *)(buf + pos);
            pos += d->reclen;
            if (!strcmp(d->name, ".") || !strcmp(d->name, "..")) continue;
            unsigned type = d->type;
            if (type == DT_UNKNOWN) {  /* a file system that does not say: ask */
                struct stat st;
                if (fstatat(fd, d->name, &st, AT_SYMLINK_NOFOLLOW) == 0)
                    type = (st.st_mode & S_IFMT) >> 12;
            }
            put_int((long long)d->ino); put_int(type);
            put(d->name, (uint32_t)strlen(d->name));
        }
    }
}

static void op_sh(const char *command) {
    int pipefd[2];
    if (pipe(pipefd)) { begin(errno); return; }
    pid_t pid = fork();
    if (pid < 0) { begin(errno); return; }
    if (pid == 0) {
        dup2(pipefd[1], 1); dup2(pipefd[1], 2);
        close(pipefd[0]); close(pipefd[1]); close(port);
        execl("/bin/sh", "sh", "-c", command, (char *)0);
        _exit(127);
    }
    close(pipefd[1]);
    size_t cap = 4096, len = 0; char *text = malloc(cap);
    for (;;) {
        if (len == cap) text = realloc(text, cap *= 2);
        ssize_t r = read(pipefd[0], text + len, cap - len);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        len += (size_t)r;
    }
    close(pipefd[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    begin(0);
    put_int(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
    put(text, (uint32_t)len);
    free(text);
}

#define SYS(call) do { if ((call) < 0) { begin(errno); return; } } while (0)

static void dispatch(struct message *m) {
    const char *op = str(m, 0);
    uint32_t argc = m->count - 1;
    struct stat st; struct statvfs sv; long long r;
#define NEED(n) do { if (argc != (n)) { begin(EINVAL); return; } } while (0)
    if (!strcmp(op, "open")) {          /* dirfd path flags mode -> fd */
        NEED(4);
        SYS(r = openat((int)num(m, 1), str(m, 2), (int)num(m, 3), (mode_t)num(m, 4)));
        begin(0); put_int(r);
    } else if (!strcmp(op, "close")) {
        NEED(1); SYS(close((int)num(m, 1))); begin(0);
    } else if (!strcmp(op, "stat")) {   /* dirfd path flags; "" path: the fd itself */
        NEED(3);
        int flags = (int)num(m, 3) | (m->f[2].len ? 0 : AT_EMPTY_PATH);
        SYS(fstatat((int)num(m, 1), str(m, 2), &st, flags));
        begin(0); put_stat(&st);
    } else if (!strcmp(op, "pread")) {  /* fd size offset -> bytes */
        NEED(3);
        size_t n = (size_t)num(m, 2); char *buf = malloc(n ? n : 1);
        ssize_t got = pread((int)num(m, 1), buf, n, (off_t)num(m, 3));
        if (got < 0) begin(errno); else { begin(0); put(buf, (uint32_t)got); }
        free(buf);
    } else if (!strcmp(op, "pwrite")) { /* fd offset data -> count */
        NEED(3);
        SYS(r = pwrite((int)num(m, 1), m->f[3].data, m->f[3].len, (off_t)num(m, 2)));
        begin(0); put_int(r);
    } else if (!strcmp(op, "ftruncate")) {
        NEED(2); SYS(ftruncate((int)num(m, 1), (off_t)num(m, 2))); begin(0);
    } else if (!strcmp(op, "truncate")) {
        NEED(2); SYS(truncate(str(m, 1), (off_t)num(m, 2))); begin(0);
    } else if (!strcmp(op, "chmod")) {  /* dirfd path mode */
        NEED(3); SYS(fchmodat((int)num(m, 1), str(m, 2), (mode_t)num(m, 3), 0)); begin(0);
    } else if (!strcmp(op, "utimens")) { /* dirfd path atime_ns mtime_ns */
        NEED(4);
        struct timespec ts[2] = {{num(m, 3) / 1000000000LL, num(m, 3) % 1000000000LL},
                                 {num(m, 4) / 1000000000LL, num(m, 4) % 1000000000LL}};
        SYS(utimensat((int)num(m, 1), str(m, 2), ts, 0)); begin(0);
    } else if (!strcmp(op, "readlink")) { /* dirfd path -> target */
        NEED(2);
        char buf[4096];
        SYS(r = readlinkat((int)num(m, 1), str(m, 2), buf, sizeof buf));
        begin(0); put(buf, (uint32_t)r);
    } else if (!strcmp(op, "symlink")) { /* target dirfd path */
        NEED(3); SYS(symlinkat(str(m, 1), (int)num(m, 2), str(m, 3))); begin(0);
    } else if (!strcmp(op, "mkdir")) {  /* dirfd path mode */
        NEED(3); SYS(mkdirat((int)num(m, 1), str(m, 2), (mode_t)num(m, 3))); begin(0);
    } else if (!strcmp(op, "unlink")) { /* dirfd path flags (AT_REMOVEDIR) */
        NEED(3); SYS(unlinkat((int)num(m, 1), str(m, 2), (int)num(m, 3))); begin(0);
    } else if (!strcmp(op, "rename")) { /* olddirfd old newdirfd new flags */
        NEED(5);
        SYS(syscall(SYS_renameat2, (int)num(m, 1), str(m, 2), (int)num(m, 3), str(m, 4),
                    (unsigned)num(m, 5)));
        begin(0);
    } else if (!strcmp(op, "fsync")) {  /* fd datasync */
        NEED(2); SYS(num(m, 2) ? fdatasync((int)num(m, 1)) : fsync((int)num(m, 1))); begin(0);
    } else if (!strcmp(op, "readdir")) { /* fd -> (ino, type, name) ... */
        NEED(1); op_readdir((int)num(m, 1));
    } else if (!strcmp(op, "statvfs")) {
        NEED(1); SYS(fstatvfs((int)num(m, 1), &sv));
        begin(0);
        put_int((long long)sv.f_bsize); put_int((long long)sv.f_frsize);
        put_int((long long)sv.f_blocks); put_int((long long)sv.f_bfree);
        put_int((long long)sv.f_bavail); put_int((long long)sv.f_files);
        put_int((long long)sv.f_ffree); put_int((long long)sv.f_favail);
        put_int((long long)sv.f_flag); put_int((long long)sv.f_namemax);
    } else if (!strcmp(op, "window")) { /* size: a fresh PROT_NONE reservation; 0: none */
        NEED(1);
        if (window) munmap(window, window_size);
        window = 0;
        window_size = (size_t)num(m, 1);
        if (!window_size) { begin(0); return; }
        window = mmap(0, window_size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                      -1, 0);
        if (window == MAP_FAILED) { window = 0; begin(errno); return; }
        begin(0);
    } else if (!strcmp(op, "map")) {    /* fd foffset length moffset writable */
        NEED(5);
        if (!in_window(num(m, 4), num(m, 3))) { begin(EINVAL); return; }
        int prot = PROT_READ | (num(m, 5) ? PROT_WRITE : 0);
        if (mmap(window + num(m, 4), (size_t)num(m, 3), prot, MAP_SHARED | MAP_FIXED,
                 (int)num(m, 1), (off_t)num(m, 2)) == MAP_FAILED) { begin(errno); return; }
        begin(0);
    } else if (!strcmp(op, "unmap")) {  /* moffset length: inaccessible again */
        NEED(2);
        if (!in_window(num(m, 1), num(m, 2))) { begin(EINVAL); return; }
        if (mmap(window + num(m, 1), (size_t)num(m, 2), PROT_NONE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0) == MAP_FAILED)
            { begin(errno); return; }
        begin(0);
    } else if (!strcmp(op, "load")) {   /* moffset size -> bytes */
        NEED(2);
        if (!in_window(num(m, 1), num(m, 2))) { begin(EFAULT); return; }
        size_t n = (size_t)num(m, 2); char *buf = malloc(n ? n : 1);
        int err = guarded_copy(buf, window + num(m, 1), n);
        if (err) begin(err); else { begin(0); put(buf, (uint32_t)n); }
        free(buf);
    } else if (!strcmp(op, "store")) {  /* moffset data */
        NEED(2);
        if (!in_window(num(m, 1), m->f[2].len)) { begin(EFAULT); return; }
        int err = guarded_copy(window + num(m, 1), m->f[2].data, m->f[2].len);
        begin(err);
    } else if (!strcmp(op, "sh")) {     /* command -> exit status, output */
        NEED(1); op_sh(str(m, 1));
    } else if (!strcmp(op, "ping")) {
        begin(0);
    } else {
        begin(ENOSYS);
    }
}

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: pagefs-agent PORT-DEVICE\n"); return 2; }
    port = open(argv[1], O_RDWR | O_CLOEXEC);
    if (port < 0) { perror(argv[1]); return 1; }
    struct sigaction sa = {0};
    sa.sa_handler = on_fault;
    sa.sa_flags = SA_NODEFER;
    sigaction(SIGBUS, &sa, 0);
    sigaction(SIGSEGV, &sa, 0);
    signal(SIGPIPE, SIG_IGN);
    out_cap = 1 << 16; out = malloc(out_cap);
    /* Announce readiness once, unasked, so the host knows when the guest is up. */
    begin(0); put("pagefs-agent ready", 18); send_reply();
    for (;;) {
        struct message m;
        if (receive(&m)) {  /* the host went away: wait for it to come back */
            sleep(1);
            continue;
        }
        dispatch(&m);
        send_reply();
        for (uint32_t i = 0; i < m.count; i++) free(m.f[i].data);
    }
}
