"""`make vm`: a test guest built from Debian's packages alone, in a cache outside the repository.

    python -m pagefs.conformance.vm.image [--cache DIR]

Downloads `linux-image-amd64`'s kernel package and `busybox-static` with `apt-get download`
(the system's own suite and apt configuration, nothing installed), unpacks them with
`dpkg -x`, compiles the guest agent with `gcc -static`, and writes an initramfs (a newc
cpio archive written here) holding busybox, the agent, the project's file exerciser
(/bin/fsx), /init and the kernel modules a share needs with their dependencies. What
was built is recorded in `image.json`; a second run reuses the downloads. QEMU itself
is `qemu-system-x86`, a system package.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from pagefs.conformance.exerciser import build as exerciser

HERE = Path(__file__).resolve().parent
DEFAULT_CACHE = Path(os.environ.get("PAGEFS_VM_CACHE", Path.home() / ".cache/pagefs/vm"))
KERNEL_PACKAGE = "linux-image-amd64"  # a metapackage: its one dependency is the kernel
BUSYBOX_PACKAGE = "busybox-static"
QEMU_PACKAGE = "qemu-system-x86"
# What a guest needs to reach its share and its agent; their dependencies come along.
MODULES = ("virtio_pci", "virtio_console", "virtiofs", "9pnet_virtio", "9p")


class ImageError(RuntimeError):
    """The image could not be built; the message says what is missing."""


@dataclass(frozen=True)
class Image:
    """A built guest: what QEMU boots."""

    kernel: Path
    initramfs: Path
    kernel_version: str

    @classmethod
    def load(cls, cache: Path = DEFAULT_CACHE) -> Image:
        """The image `make vm` built; ImageError with the fix when there is none."""
        try:
            meta = json.loads((cache / "image.json").read_text())
        except FileNotFoundError:
            raise ImageError(f"no guest image in {cache}: run `make vm`") from None
        image = cls(Path(meta["kernel"]), Path(meta["initramfs"]), meta["kernel_version"])
        for path in (image.kernel, image.initramfs):
            if not path.is_file():
                raise ImageError(f"{path} is missing: run `make vm`")
        return image


def _run(*args: str, cwd: Path | None = None) -> str:
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise ImageError(f"{' '.join(args)} failed: {done.stderr.strip()[-400:]}")
    return done.stdout


def kernel_package() -> str:
    """The versioned kernel package `linux-image-amd64` stands for in this system's suite."""
    for line in _run("apt-cache", "depends", KERNEL_PACKAGE).splitlines():
        found = re.match(r"\s*Depends:\s*(linux-image-\S+)", line)
        if found:
            return found.group(1)
    raise ImageError(f"apt-cache knows no dependency of {KERNEL_PACKAGE}: run apt-get update")


def fetch(packages: list[str], debs: Path, root: Path) -> None:
    """`apt-get download` each package not yet in `debs`, `dpkg -x` it into `root`."""
    debs.mkdir(parents=True, exist_ok=True)
    os.chmod(debs, 0o777)  # apt's download user writes here
    for package in packages:
        if not list(debs.glob(f"{package}_*.deb")):
            _run("apt-get", "download", package, cwd=debs)
        (deb,) = debs.glob(f"{package}_*.deb")
        _run("dpkg-deb", "-x", str(deb), str(root))


def module_dependencies(ko: Path) -> list[str]:
    """The `depends=` line of a module's .modinfo section (modinfo's answer, without kmod)."""
    found = re.search(rb"\0depends=([A-Za-z0-9_,-]*)\0", ko.read_bytes())
    return [d for d in found.group(1).decode().split(",") if d] if found else []


def modules_in_order(moddir: Path, wanted: tuple[str, ...]) -> list[Path]:
    """`wanted` and what they depend on, each after its dependencies (the order insmod needs)."""
    by_name = {ko.stem.replace("-", "_"): ko for ko in moddir.rglob("*.ko")}
    ordered: list[Path] = []

    def visit(name: str) -> None:
        ko = by_name.get(name.replace("-", "_"))
        if ko is None:
            raise ImageError(f"module {name} is not in {moddir} (built in, or renamed?)")
        if ko in ordered:
            return
        for dependency in module_dependencies(ko):
            visit(dependency)
        ordered.append(ko)

    for name in wanted:
        visit(name)
    return ordered


class Cpio:
    """A newc ("070701") archive, the format the kernel unpacks as an initramfs."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._ino = 1

    def _entry(self, name: str, mode: int, data: bytes = b"") -> None:
        fields = [self._ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name) + 1, 0]
        header = b"070701" + b"".join(b"%08X" % f for f in fields)
        self._ino += 1
        self._add(header + name.encode() + b"\0")
        self._add(data)

    def _add(self, chunk: bytes) -> None:
        self._parts.append(chunk)
        self._parts.append(b"\0" * (-len(chunk) % 4))

    def directory(self, name: str) -> None:
        self._entry(name, 0o040755)

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self._entry(name, 0o100000 | mode, data)

    def symlink(self, name: str, target: str) -> None:
        self._entry(name, 0o120777, target.encode())

    def bytes(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        return b"".join(self._parts)


def build(cache: Path = DEFAULT_CACHE) -> Image:
    for tool in ("apt-get", "dpkg-deb", "gcc"):
        if shutil.which(tool) is None:
            raise ImageError(f"{tool} not found: `make vm` needs Debian's apt, dpkg and gcc")
    root = cache / "root"
    kernel_pkg = kernel_package()
    fetch([kernel_pkg, BUSYBOX_PACKAGE], cache / "debs", root)
    version = kernel_pkg.removeprefix("linux-image-")
    kernel = root / "boot" / f"vmlinuz-{version}"
    moddir = root / "lib" / "modules" / version
    agent = cache / "pagefs-agent"
    _run("gcc", "-static", "-O2", "-Wall", "-o", str(agent), str(HERE / "agent.c"))

    archive = Cpio()
    for d in ("bin", "sbin", "etc", "lib", "lib/modules", "proc", "sys", "dev", "tmp", "mnt"):
        archive.directory(d)
    archive.file("bin/busybox", (root / "bin" / "busybox").read_bytes(), 0o755)
    archive.symlink("bin/sh", "busybox")
    archive.file("init", (HERE / "init.sh").read_bytes(), 0o755)
    archive.file("sbin/pagefs-agent", agent.read_bytes(), 0o755)
    archive.file("bin/fsx", Path(exerciser.binary()).read_bytes(), 0o755)
    modules = modules_in_order(moddir, MODULES)
    for ko in modules:
        archive.file(f"lib/modules/{ko.name}", ko.read_bytes())
    archive.file("etc/pagefs-modules", "".join(f"{ko.name}\n" for ko in modules).encode())
    initramfs = cache / "initramfs.cpio"
    initramfs.write_bytes(archive.bytes())

    image = Image(kernel, initramfs, version)
    (cache / "image.json").write_text(json.dumps(
        {"kernel": str(kernel), "initramfs": str(initramfs), "kernel_version": version,
         "modules": [ko.name for ko in modules]}, indent=1))
    return image


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make vm", description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE,
                        help="where the guest is built (default %(default)s)")
    args = parser.parse_args(argv)
    if shutil.which("qemu-system-x86_64") is None:
        print(f"make vm: qemu-system-x86_64 not found: apt-get install {QEMU_PACKAGE}",
              file=sys.stderr)
        return 1
    try:
        image = build(args.cache)
    except (ImageError, exerciser.BuildError) as e:
        print(f"make vm: {e}", file=sys.stderr)
        return 1
    print(f"kernel    {image.kernel} ({image.kernel_version})")
    print(f"initramfs {image.initramfs} ({image.initramfs.stat().st_size >> 10} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
