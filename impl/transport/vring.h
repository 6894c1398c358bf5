/* Split virtqueues (virtio 1.x, section "Split Virtqueues"): the per-request hot path of
 * both ends, driver (guest front-end) and device (host back-end).
 *
 * The rings live in memory shared between two processes. Every index that publishes
 * entries to the other side is stored with release semantics and read with acquire
 * semantics; the notification decisions need a full fence between publishing an index
 * and reading the other side's suppression field (the classic lost-wakeup race).
 */
#ifndef PAGEFS_VRING_H
#define PAGEFS_VRING_H

#include <stddef.h>
#include <stdint.h>

#define VRING_DESC_F_NEXT 1
#define VRING_DESC_F_WRITE 2
#define VRING_DESC_F_INDIRECT 4
#define VRING_USED_F_NO_NOTIFY 1
#define VRING_AVAIL_F_NO_INTERRUPT 1

struct vring_desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    uint16_t next;
};

struct vring_used_elem {
    uint32_t id;
    uint32_t len;
};

/* Driver side. `next` and `chain_len` are private to the driver (num entries each), so a
 * device that scribbles on the descriptor table cannot corrupt the free list. */
struct vq_driver {
    struct vring_desc *desc;
    uint16_t *avail;            /* flags, idx, ring[num], used_event */
    uint8_t *used;              /* flags, idx, elems[num], avail_event */
    uint16_t *next;
    uint16_t *chain_len;
    uint16_t num;
    uint16_t free_head;
    uint16_t num_free;
    uint16_t avail_idx;
    uint16_t last_used;
    int event_idx;
};

/* A guest-physical range mapped into this process (device side). */
struct vq_region {
    uint64_t gpa;
    uint64_t size;
    uint8_t *hva;
};

struct vq_seg {
    uint8_t *ptr;
    uint32_t len;
};

struct vq_device {
    struct vring_desc *desc;
    uint16_t *avail;
    uint8_t *used;
    const struct vq_region *regions;
    uint32_t nregions;
    uint16_t num;
    uint16_t last_avail;
    uint16_t used_idx;
    int event_idx;
};

size_t vring_desc_bytes(unsigned num);
size_t vring_avail_bytes(unsigned num);
size_t vring_used_bytes(unsigned num);

void vq_driver_init(struct vq_driver *vq);
int vq_driver_add(struct vq_driver *vq, const uint64_t *addr, const uint32_t *len,
                  unsigned n_out, unsigned n_in);
int vq_driver_kick_needed(struct vq_driver *vq, uint16_t old_avail);
int vq_driver_get_used(struct vq_driver *vq, uint32_t *len);
int vq_driver_has_used(struct vq_driver *vq);
int vq_driver_pop_used(struct vq_driver *vq, uint32_t *len);
void vq_driver_free_chain(struct vq_driver *vq, uint16_t head);
int vq_driver_used_pending(struct vq_driver *vq);
void vq_driver_disable_calls(struct vq_driver *vq);
int vq_driver_enable_calls(struct vq_driver *vq);

void vq_device_init(struct vq_device *vq);
int vq_device_pop(struct vq_device *vq, struct vq_seg *segs, unsigned max_segs,
                  unsigned *n_out, uint16_t *head, uint64_t *bytes_out, uint64_t *bytes_in);
void vq_device_push(struct vq_device *vq, uint16_t head, uint32_t len);
int vq_device_notify_needed(struct vq_device *vq, uint16_t old_used);
void vq_device_suppress_kicks(struct vq_device *vq);
int vq_device_enable_kicks(struct vq_device *vq);

size_t vq_gather(const struct vq_seg *segs, unsigned n, uint8_t *dst, size_t cap);
size_t vq_scatter(const struct vq_seg *segs, unsigned n, const uint8_t *src, size_t len);
int vq_device_complete(struct vq_device *vq, const struct vq_seg *segs, unsigned n_out,
                       unsigned n_all, uint16_t head, const char *reply, size_t len,
                       uint32_t *written);

#endif
