"""cffi build script for the split-virtqueue hot path (vring.c) and the few mapping calls
the transport needs at fixed addresses (Python's mmap module cannot map MAP_FIXED)."""

import sys
from pathlib import Path

from cffi import FFI

if sys.byteorder != "little":
    raise SystemExit("pagefs's virtqueues need a little-endian host (virtio 1.x is little-endian)")

HERE = Path(__file__).parent

ffibuilder = FFI()
ffibuilder.cdef(
    """
    struct vring_desc { uint64_t addr; uint32_t len; uint16_t flags; uint16_t next; };
    struct vq_driver {
        struct vring_desc *desc; uint16_t *avail; uint8_t *used;
        uint16_t *next; uint16_t *chain_len;
        uint16_t num; uint16_t free_head; uint16_t num_free; uint16_t avail_idx;
        uint16_t last_used; int event_idx;
    };
    struct vq_region { uint64_t gpa; uint64_t size; uint8_t *hva; };
    struct vq_seg { uint8_t *ptr; uint32_t len; };
    struct vq_device {
        struct vring_desc *desc; uint16_t *avail; uint8_t *used;
        const struct vq_region *regions; uint32_t nregions;
        uint16_t num; uint16_t last_avail; uint16_t used_idx; int event_idx;
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

    void vq_device_init(struct vq_device *vq);
    int vq_device_pop(struct vq_device *vq, struct vq_seg *segs, unsigned max_segs,
                      unsigned *n_out, uint16_t *head);
    void vq_device_push(struct vq_device *vq, uint16_t head, uint32_t len);
    int vq_device_notify_needed(struct vq_device *vq, uint16_t old_used);
    void vq_device_suppress_kicks(struct vq_device *vq);
    int vq_device_enable_kicks(struct vq_device *vq);

    size_t vq_gather(const struct vq_seg *segs, unsigned n, uint8_t *dst, size_t cap);
    size_t vq_scatter(const struct vq_seg *segs, unsigned n, const uint8_t *src, size_t len);

    #define PROT_NONE ...
    #define PROT_READ ...
    #define PROT_WRITE ...
    #define MAP_SHARED ...
    #define MAP_PRIVATE ...
    #define MAP_FIXED ...
    #define MAP_ANONYMOUS ...
    #define MAP_NORESERVE ...
    void *mmap(void *addr, size_t length, int prot, int flags, int fd, long offset);
    int munmap(void *addr, size_t length);
    """
)
ffibuilder.set_source(
    "pagefs.impl.transport._vring",
    '#include <sys/mman.h>\n#include "vring.h"\n',
    sources=[str(HERE / "vring.c")],
    include_dirs=[str(HERE)],
    extra_compile_args=["-O2", "-std=gnu11", "-Wall", "-Wextra"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
