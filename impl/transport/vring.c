/* Split virtqueue hot path; see vring.h for the memory-ordering contract.
 *
 * All fields are little-endian on the wire (virtio 1.x); pagefs runs on little-endian
 * hosts only, which the build script checks. */
#include <errno.h>
#include <string.h>

#include "vring.h"

#define LOAD_ACQ(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define LOAD_RLX(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define STORE_REL(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
#define STORE_RLX(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)
#define FULL_FENCE() __atomic_thread_fence(__ATOMIC_SEQ_CST)

size_t vring_desc_bytes(unsigned num) { return 16u * num; }
size_t vring_avail_bytes(unsigned num) { return 6u + 2u * num; }
size_t vring_used_bytes(unsigned num) { return 6u + 8u * num; }

static uint16_t *used_flags(uint8_t *used) { return (uint16_t *)used; }
static uint16_t *used_idx(uint8_t *used) { return (uint16_t *)(used + 2); }
static struct vring_used_elem *used_ring(uint8_t *used) {
    return (struct vring_used_elem *)(used + 4);
}
static uint16_t *avail_event(uint8_t *used, uint16_t num) {
    return (uint16_t *)(used + 4 + 8u * num);
}
static uint16_t *used_event(uint16_t *avail, uint16_t num) { return &avail[2 + num]; }

/* The other side asked to be notified once the index passes `event` (virtio "event
 * suppression"): notify iff event lies in [old, new). */
static int need_event(uint16_t event, uint16_t new_idx, uint16_t old_idx) {
    return (uint16_t)(new_idx - event - 1) < (uint16_t)(new_idx - old_idx);
}

/* ---- driver ---------------------------------------------------------------------- */

void vq_driver_init(struct vq_driver *vq) {
    for (unsigned i = 0; i < vq->num; i++) {
        vq->next[i] = (uint16_t)(i + 1);
        vq->chain_len[i] = 0;
    }
    vq->free_head = 0;
    vq->num_free = vq->num;
    vq->avail_idx = 0;
    vq->last_used = 0;
    STORE_RLX(&vq->avail[0], 0);
    STORE_RLX(&vq->avail[1], 0);
    STORE_RLX(used_event(vq->avail, vq->num), 0);
}

/* Adds one chain: n_out device-readable buffers then n_in device-writable ones, and
 * publishes it. Returns the head descriptor index, or -ENOSPC / -EINVAL. */
int vq_driver_add(struct vq_driver *vq, const uint64_t *addr, const uint32_t *len,
                  unsigned n_out, unsigned n_in) {
    unsigned n = n_out + n_in;
    if (n == 0 || n > vq->num)
        return -EINVAL;
    if (n > vq->num_free)
        return -ENOSPC;
    uint16_t head = vq->free_head;
    uint16_t i = head;
    for (unsigned k = 0; k < n; k++) {
        struct vring_desc *d = &vq->desc[i];
        uint16_t following = vq->next[i];
        d->addr = addr[k];
        d->len = len[k];
        d->flags = (uint16_t)((k >= n_out ? VRING_DESC_F_WRITE : 0) |
                              (k + 1 < n ? VRING_DESC_F_NEXT : 0));
        d->next = k + 1 < n ? following : 0;
        i = following;
    }
    vq->free_head = i;
    vq->num_free = (uint16_t)(vq->num_free - n);
    vq->chain_len[head] = (uint16_t)n;
    STORE_RLX(&vq->avail[2 + (vq->avail_idx & (vq->num - 1))], head);
    vq->avail_idx++;
    /* Descriptors and the ring slot must be visible before the index that exposes them. */
    STORE_REL(&vq->avail[1], vq->avail_idx);
    return head;
}

/* After publishing (avail index moved from old_avail), must the device be kicked? */
int vq_driver_kick_needed(struct vq_driver *vq, uint16_t old_avail) {
    FULL_FENCE();
    if (vq->event_idx)
        return need_event(LOAD_RLX(avail_event(vq->used, vq->num)), vq->avail_idx, old_avail);
    return !(LOAD_RLX(used_flags(vq->used)) & VRING_USED_F_NO_NOTIFY);
}

int vq_driver_has_used(struct vq_driver *vq) {
    FULL_FENCE();
    return LOAD_ACQ(used_idx(vq->used)) != vq->last_used;
}

/* Takes one used chain without freeing its descriptors (its buffers may still be read
 * through them): returns its head (and the written length), -EAGAIN when the used ring is
 * empty, -EIO when the device returned a head that is not in flight. */
int vq_driver_pop_used(struct vq_driver *vq, uint32_t *len) {
    uint16_t published = LOAD_ACQ(used_idx(vq->used));
    if (published == vq->last_used)
        return -EAGAIN;
    if ((uint16_t)(published - vq->last_used) > vq->num)
        return -EIO;
    struct vring_used_elem *e = &used_ring(vq->used)[vq->last_used & (vq->num - 1)];
    uint32_t id = LOAD_RLX(&e->id);
    *len = LOAD_RLX(&e->len);
    if (id >= vq->num || vq->chain_len[id] == 0)
        return -EIO;
    vq->last_used++;
    return (int)id;
}

/* Returns a popped chain's descriptors to the free list. */
void vq_driver_free_chain(struct vq_driver *vq, uint16_t head) {
    uint16_t last = head;
    for (unsigned k = 1; k < vq->chain_len[head]; k++)
        last = vq->next[last];
    vq->next[last] = vq->free_head;
    vq->free_head = head;
    vq->num_free = (uint16_t)(vq->num_free + vq->chain_len[head]);
    vq->chain_len[head] = 0;
}

/* pop_used and free_chain at once, asking for a call as soon as anything beyond what was
 * consumed is used. */
int vq_driver_get_used(struct vq_driver *vq, uint32_t *len) {
    int id = vq_driver_pop_used(vq, len);
    if (id < 0)
        return id;
    vq_driver_free_chain(vq, (uint16_t)id);
    if (vq->event_idx)
        STORE_REL(used_event(vq->avail, vq->num), vq->last_used);
    return id;
}

/* For spinning: has the device published used chains? (no fence: a hint, re-checked) */
int vq_driver_used_pending(struct vq_driver *vq) {
    return LOAD_ACQ(used_idx(vq->used)) != vq->last_used;
}

/* While the driver polls the used ring, the device need not call. With EVENT_IDX the
 * event index is put just behind what was consumed: the device calls only once its index
 * passes it, which cannot happen before the driver moves it forward again. */
void vq_driver_disable_calls(struct vq_driver *vq) {
    if (vq->event_idx)
        STORE_RLX(used_event(vq->avail, vq->num), (uint16_t)(vq->last_used - 1));
    else
        STORE_RLX(&vq->avail[0], VRING_AVAIL_F_NO_INTERRUPT);
}

/* Before sleeping on the call eventfd: ask for a call on the next used chain, then look
 * once more (full fence between), so a chain used in between is not slept over. */
int vq_driver_enable_calls(struct vq_driver *vq) {
    if (vq->event_idx)
        STORE_RLX(used_event(vq->avail, vq->num), vq->last_used);
    else
        STORE_RLX(&vq->avail[0], 0);
    FULL_FENCE();
    return LOAD_ACQ(used_idx(vq->used)) != vq->last_used;
}

/* ---- device ---------------------------------------------------------------------- */

void vq_device_init(struct vq_device *vq) {
    vq->used_idx = LOAD_ACQ(used_idx(vq->used));
}

static uint8_t *translate(const struct vq_device *vq, uint64_t gpa, uint32_t len) {
    for (uint32_t r = 0; r < vq->nregions; r++) {
        const struct vq_region *reg = &vq->regions[r];
        if (gpa >= reg->gpa && gpa - reg->gpa <= reg->size && len <= reg->size - (gpa - reg->gpa))
            return reg->hva + (gpa - reg->gpa);
    }
    return NULL;
}

/* Pops one available chain into segs (readable ones first, n_out of them, then the
 * writable ones) with the byte counts of both parts. Returns the number of segments, 0 when nothing is available, or a
 * negative errno when the driver published a malformed chain (the queue is then broken:
 * out-of-range head or next, loop, chain longer than the queue, indirect descriptor,
 * readable after writable, address outside guest memory). */
int vq_device_pop(struct vq_device *vq, struct vq_seg *segs, unsigned max_segs,
                  unsigned *n_out, uint16_t *head, uint64_t *bytes_out, uint64_t *bytes_in) {
    uint16_t published = LOAD_ACQ(&vq->avail[1]);
    if (published == vq->last_avail)
        return 0;
    if ((uint16_t)(published - vq->last_avail) > vq->num)
        return -EINVAL;
    uint16_t h = LOAD_RLX(&vq->avail[2 + (vq->last_avail & (vq->num - 1))]);
    vq->last_avail++;
    if (h >= vq->num)
        return -EINVAL;
    unsigned count = 0, readable = 0;
    uint64_t readable_bytes = 0, writable_bytes = 0;
    int seen_writable = 0;
    uint16_t i = h;
    for (;;) {
        if (count >= vq->num)
            return -ELOOP;
        if (count >= max_segs)
            return -E2BIG;
        struct vring_desc d;
        memcpy(&d, &vq->desc[i], sizeof d); /* read once: the driver may change it under us */
        if (d.flags & VRING_DESC_F_INDIRECT)
            return -EINVAL;
        uint8_t *p = translate(vq, d.addr, d.len);
        if (p == NULL)
            return -EFAULT;
        if (d.flags & VRING_DESC_F_WRITE) {
            seen_writable = 1;
            writable_bytes += d.len;
        } else {
            if (seen_writable)
                return -EINVAL;
            readable++;
            readable_bytes += d.len;
        }
        segs[count].ptr = p;
        segs[count].len = d.len;
        count++;
        if (!(d.flags & VRING_DESC_F_NEXT))
            break;
        if (d.next >= vq->num)
            return -EINVAL;
        i = d.next;
    }
    *n_out = readable;
    *head = h;
    *bytes_out = readable_bytes;
    *bytes_in = writable_bytes;
    return (int)count;
}

void vq_device_push(struct vq_device *vq, uint16_t head, uint32_t len) {
    struct vring_used_elem *e = &used_ring(vq->used)[vq->used_idx & (vq->num - 1)];
    STORE_RLX(&e->id, head);
    STORE_RLX(&e->len, len);
    vq->used_idx++;
    STORE_REL(used_idx(vq->used), vq->used_idx);
}

int vq_device_notify_needed(struct vq_device *vq, uint16_t old_used) {
    FULL_FENCE();
    if (vq->event_idx)
        return need_event(LOAD_RLX(used_event(vq->avail, vq->num)), vq->used_idx, old_used);
    return !(LOAD_RLX(&vq->avail[0]) & VRING_AVAIL_F_NO_INTERRUPT);
}

/* While draining the ring the device needs no kicks. */
void vq_device_suppress_kicks(struct vq_device *vq) {
    if (!vq->event_idx)
        STORE_RLX(used_flags(vq->used), VRING_USED_F_NO_NOTIFY);
}

/* Before sleeping on the kick eventfd: ask for kicks again, then look once more, so a
 * chain published in between is not left waiting. Returns 1 if work is available. */
int vq_device_enable_kicks(struct vq_device *vq) {
    if (vq->event_idx)
        STORE_RLX(avail_event(vq->used, vq->num), vq->last_avail);
    else
        STORE_RLX(used_flags(vq->used), 0);
    FULL_FENCE();
    return LOAD_ACQ(&vq->avail[1]) != vq->last_avail;
}

size_t vq_gather(const struct vq_seg *segs, unsigned n, uint8_t *dst, size_t cap) {
    size_t done = 0;
    for (unsigned k = 0; k < n && done < cap; k++) {
        size_t take = segs[k].len < cap - done ? segs[k].len : cap - done;
        memcpy(dst + done, segs[k].ptr, take);
        done += take;
    }
    return done;
}

size_t vq_scatter(const struct vq_seg *segs, unsigned n, const uint8_t *src, size_t len) {
    size_t done = 0;
    for (unsigned k = 0; k < n && done < len; k++) {
        size_t put = segs[k].len < len - done ? segs[k].len : len - done;
        memcpy(segs[k].ptr, src + done, put);
        done += put;
    }
    return done;
}

/* The device's whole answer to one popped chain: copy the reply into its writable part
 * (as much as fits; *written says how much), push it used, and say whether the driver
 * wants a notification. One call per request instead of three. */
int vq_device_complete(struct vq_device *vq, const struct vq_seg *segs, unsigned n_out,
                       unsigned n_all, uint16_t head, const char *reply, size_t len,
                       uint32_t *written) {
    uint16_t old_used = vq->used_idx;
    *written = (uint32_t)vq_scatter(segs + n_out, n_all - n_out, (const uint8_t *)reply, len);
    vq_device_push(vq, head, *written);
    return vq_device_notify_needed(vq, old_used);
}
