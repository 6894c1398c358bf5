"""Launcher for the Rust virtiofsd (Debian unstable's `virtiofsd` 1.14), the back-end
upstream QEMU points users to in place of its C one.

`make virtiofsd-rust` (scripts/install-virtiofsd-rust) unpacks it with unstable's libc6
into ~/.cache/pagefs/virtiofsd-rust/root; it runs through that libc's own loader, so
nothing of the system's libc or apt state changes.

    with RustVirtiofsd(shared_dir, cache="never") as d:
        FuseClient.connect(d.socket_path)
"""

from __future__ import annotations

import os

from pagefs.impl.client.virtiofsd import Virtiofsd, VirtiofsdError

CACHE_MODES = ("auto", "always", "never", "metadata")
INSTALL_HINT = "run `make virtiofsd-rust` (scripts/install-virtiofsd-rust)"


def cache_root() -> str:
    base = os.environ.get("PAGEFS_CACHE") or os.path.join(os.path.expanduser("~"), ".cache",
                                                          "pagefs")
    return os.path.join(base, "virtiofsd-rust", "root")


def find_rust_virtiofsd() -> str:
    """The unpacked binary; VirtiofsdError saying how to install it when missing."""
    binary = os.path.join(cache_root(), "usr", "libexec", "virtiofsd")
    if not os.access(binary, os.X_OK):
        raise VirtiofsdError(f"the Rust virtiofsd is not at {binary}: {INSTALL_HINT}")
    return binary


class RustVirtiofsd(Virtiofsd):
    """One Rust virtiofsd exporting `shared_dir` on a fresh socket (`readonly` for
    --readonly; `cache` one of auto, always, never, metadata)."""

    CACHE_MODES = CACHE_MODES
    NAME = "the Rust virtiofsd"

    def __init__(self, shared_dir: str | os.PathLike, *, cache: str = "auto",
                 readonly: bool = False, allow_mmap: bool = True,
                 socket_path: str | None = None, extra_args: tuple[str, ...] = ()) -> None:
        super().__init__(shared_dir, cache=cache, socket_path=socket_path,
                         extra_args=extra_args)
        self.readonly = readonly
        self.allow_mmap = allow_mmap

    @staticmethod
    def find(binary: str | None) -> str:
        return binary or find_rust_virtiofsd()

    def command(self) -> list[str]:
        libdir = os.path.join(cache_root(), "usr", "lib", "x86_64-linux-gnu")
        args = [
            # unstable's binary needs unstable's libc: run it through that libc's loader
            os.path.join(libdir, "ld-linux-x86-64.so.2"),
            "--library-path", f"{libdir}:/lib/x86_64-linux-gnu", self.binary,
            f"--socket-path={self.socket_path}", f"--shared-dir={self.shared_dir}",
            f"--cache={self.cache}",
            # the namespace sandbox needs privileges containers lack; chroot confines it
            # to the shared directory wherever root runs it
            f"--sandbox={self.sandbox}", "--log-level=warn",
        ]
        if self.readonly:
            args.append("--readonly")
        if self.allow_mmap and self.cache in ("never", "metadata"):
            args.append("--allow-mmap")  # shared mmap, as the C one's cache=none gives
        return [*args, *self.extra_args]
