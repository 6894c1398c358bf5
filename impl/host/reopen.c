/* See reopen.h. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "reopen.h"

/* open_by_handle_at needs CAP_DAC_READ_SEARCH, which a thread acting as a guest user has
 * dropped from its effective set: raised for this call alone, from the permitted set. */
int pagefs_reopen_through(int fd, int mount_fd, int flags) {
    union {
        struct file_handle head;
        char room[sizeof(struct file_handle) + MAX_HANDLE_SZ];
    } h;
    int mount_id;
    h.head.handle_bytes = MAX_HANDLE_SZ;
    if (name_to_handle_at(fd, "", &h.head, &mount_id, AT_EMPTY_PATH) != 0)
        return -1;
    struct __user_cap_header_struct head = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct caps[2], raised[2];
    if (syscall(SYS_capget, &head, caps) != 0)
        return -1;
    raised[0] = caps[0];
    raised[1] = caps[1];
    raised[0].effective |= caps[0].permitted & (1u << CAP_DAC_READ_SEARCH);
    if (syscall(SYS_capset, &head, raised) != 0)
        return -1;
    int opened = open_by_handle_at(mount_fd, &h.head, flags);
    int saved = errno;
    syscall(SYS_capset, &head, caps);
    errno = saved;
    return opened;
}
