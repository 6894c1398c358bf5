/* The reopen of an inode through another mount of its file system: the sandbox's
 * read-only view (sandbox.py) and the fast path's read mappings (fastpath.c) use it. */
#ifndef PAGEFS_REOPEN_H
#define PAGEFS_REOPEN_H

/* The inode open at `fd`, opened again with `flags` through the mount `mount_fd` names
 * (same file system): on a read-only mount, an fd nobody can reopen for writing. -1 and
 * errno on failure. */
int pagefs_reopen_through(int fd, int mount_fd, int flags);

#endif
