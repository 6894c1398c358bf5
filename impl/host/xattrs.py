"""Which extended attributes a guest may see and change, and how their sizes are answered.

Only the `user.` namespace crosses the export boundary. The others carry meaning for the
host's own privileged software: `security.` holds file capabilities (a guest-set
`security.capability` on a binary in the export would hand privileges to whoever on the
host runs it) and LSM labels; `trusted.` holds what root-only host software trusts
(overlayfs's `trusted.overlay.*` redirects, for one); `system.` holds POSIX ACLs, which
change who on the host may open the file. So a guest can neither set nor remove them
(EPERM, what an unprivileged Linux process gets for `trusted.`), nor see them: GETXATTR
answers ENODATA (the attribute does not exist for the guest) and LISTXATTR leaves them out.
Refusals are never EOPNOTSUPP, which would make a Linux guest stop asking for any xattr.
"""

from __future__ import annotations

import errno

GUEST_NAMESPACE = b"user."
NAME_MAX = 255  # XATTR_NAME_MAX
SIZE_MAX = 65536  # XATTR_SIZE_MAX and XATTR_LIST_MAX
XATTR_CREATE = 1
XATTR_REPLACE = 2


def check_name(name: bytes) -> None:
    """A name the host could hold: not empty (ERANGE, as Linux says), not too long (ERANGE)."""
    if not name or len(name) > NAME_MAX:
        raise OSError(errno.ERANGE, f"xattr name of {len(name)} bytes")


def visible(name: bytes) -> bool:
    return name.startswith(GUEST_NAMESPACE) and len(name) > len(GUEST_NAMESPACE)


def check_change(name: bytes, value: bytes | None = None, flags: int = 0) -> None:
    """SETXATTR (value given) and REMOVEXATTR: only user.* names, known flags, no value
    beyond XATTR_SIZE_MAX."""
    check_name(name)
    if flags & ~(XATTR_CREATE | XATTR_REPLACE) or flags == XATTR_CREATE | XATTR_REPLACE:
        raise OSError(errno.EINVAL, f"setxattr flags {flags:#x}")
    if not visible(name):
        raise OSError(errno.EPERM, "only user.* extended attributes are the guest's")
    if value is not None and len(value) > SIZE_MAX:
        raise OSError(errno.E2BIG, f"xattr value of {len(value)} bytes")


def names_list(names: list[str]) -> bytes:
    """LISTXATTR's answer: the visible names, each NUL-terminated."""
    raw = (name.encode("utf-8", "surrogateescape") for name in names)
    return b"".join(name + b"\0" for name in raw if visible(name))


def fitted(data: bytes, size: int) -> bytes | int:
    """What GETXATTR and LISTXATTR answer for a guest offering `size` bytes: the length when
    it asks with 0, ERANGE when the data does not fit, else the data."""
    if size == 0:
        return len(data)
    if len(data) > size:
        raise OSError(errno.ERANGE, f"{len(data)} bytes do not fit in {size}")
    return data
