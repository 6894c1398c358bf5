"""procfd: an inode is reopened through a descriptor of this process's own fd directory,
and a forked child's descriptor (the same number) names the child's table, not the
parent's (the host's worker per guest reopens its own guest's descriptors)."""

from __future__ import annotations

import os
from pathlib import Path

from pagefs.impl.transport import procfd


def test_reopen_opens_what_the_descriptor_is_open_on(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"data")
    path_fd = os.open(tmp_path / "f", os.O_PATH | os.O_CLOEXEC)
    try:
        fd = procfd.reopen(path_fd, os.O_RDONLY)
        assert os.read(fd, 4) == b"data"
        os.close(fd)
    finally:
        os.close(path_fd)


def test_a_forked_child_reopens_through_its_own_fd_table(tmp_path: Path) -> None:
    (tmp_path / "child").write_bytes(b"mine")
    directory = procfd.directory()
    parents = os.readlink(f"/proc/self/fd/{directory}")
    pid = os.fork()
    if pid == 0:  # exit status: 0 if the child's own descriptor reopens, else a reason
        status = 1
        try:
            only_here = os.open(tmp_path / "child", os.O_PATH | os.O_CLOEXEC)
            if procfd.directory() != directory:
                status = 2
            elif os.readlink(f"/proc/self/fd/{directory}") == parents:
                status = 3
            else:
                fd = procfd.reopen(only_here, os.O_RDONLY)
                status = 0 if os.read(fd, 4) == b"mine" else 4
        finally:
            os._exit(status)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert os.readlink(f"/proc/self/fd/{directory}") == parents  # the parent's unchanged
