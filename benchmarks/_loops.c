/* The measured inner loops of pagefs's benchmarks, in C, so that both sides of a ratio
 * run the same instructions: a native mapping and the DAX window are copied by one loop,
 * two processes sharing a memfd and two guests sharing a pagefs mapping ping-pong with
 * one loop, and the eventfd reference uses the same timing and deadline. */
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <sched.h>
#include <unistd.h>

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Copy `chunk` bytes at each file offset into `dst`. The file is seen through `bases`,
 * one address per range of 2^shift bytes (a native mapping is described the same way,
 * range by range), so the window's ranges, which are not contiguous, cost no extra
 * work over the native mapping: each side does the same shift, mask and load. An
 * access must not cross a range. Returns the bytes copied. */
uint64_t copy_offsets(char *dst, char *const *bases, unsigned shift, const uint64_t *offsets,
                      size_t count, size_t chunk)
{
    uint64_t mask = ((uint64_t)1 << shift) - 1, total = 0;
    for (size_t i = 0; i < count; i++) {
        uint64_t off = offsets[i];
        memcpy(dst, bases[off >> shift] + (off & mask), chunk);
        total += chunk;
    }
    return total;
}

#define SPINS 200 /* loads before yielding: on 2 shared cores the peer may not be running */

/* Wait until *word == value; 0, or -1 once `deadline` (monotonic ns) has passed. */
static int wait_for(volatile uint64_t *word, uint64_t value, uint64_t deadline)
{
    unsigned spins = 0;
    while (__atomic_load_n(word, __ATOMIC_ACQUIRE) != value) {
        if (++spins == SPINS) {
            spins = 0;
            sched_yield();
            if (now_ns() > deadline)
                return -1;
        }
    }
    return 0;
}

/* Store-to-load ping-pong on a shared word, rounds [first, first + rounds): the
 * initiator stores 2n+1 and waits for 2n+2, recording each round trip in samples_ns;
 * the responder waits for 2n+1 and stores 2n+2. Returns 0, or -1 at the deadline. */
int spin_rounds(volatile uint64_t *word, uint64_t first, uint64_t rounds, int initiator,
                uint64_t *samples_ns, uint64_t deadline)
{
    for (uint64_t n = first; n < first + rounds; n++) {
        if (initiator) {
            uint64_t start = now_ns();
            __atomic_store_n(word, 2 * n + 1, __ATOMIC_RELEASE);
            if (wait_for(word, 2 * n + 2, deadline))
                return -1;
            samples_ns[n - first] = now_ns() - start;
        } else {
            if (wait_for(word, 2 * n + 1, deadline))
                return -1;
            __atomic_store_n(word, 2 * n + 2, __ATOMIC_RELEASE);
        }
    }
    return 0;
}

/* One eventfd notification each way per round: the initiator writes `ping` and reads
 * `pong` (recording the round trip), the responder the reverse. Blocking reads: each
 * hop is a wake-up of the other process. Returns 0, or -1 on a failed read or write. */
int eventfd_rounds(int ping, int pong, uint64_t rounds, int initiator, uint64_t *samples_ns)
{
    uint64_t one = 1, got;
    for (uint64_t n = 0; n < rounds; n++) {
        if (initiator) {
            uint64_t start = now_ns();
            if (write(ping, &one, 8) != 8 || read(pong, &got, 8) != 8)
                return -1;
            samples_ns[n] = now_ns() - start;
        } else {
            if (read(ping, &got, 8) != 8 || write(pong, &one, 8) != 8)
                return -1;
        }
    }
    return 0;
}
