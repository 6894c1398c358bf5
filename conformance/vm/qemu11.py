"""`make qemu11`: QEMU 11.1 from Debian unstable, unpacked in a cache, never installed.

    python -m pagefs.conformance.vm.qemu11 [--cache DIR]

QEMU 11.1 is the first release whose vhost-user carries VIRTIO shared memory regions, the
DAX window's way into a real guest (through its generic `vhost-user-test-device-pci`).
Debian's stable suite has 7.2, so this fetches unstable's `qemu-system-x86` and the few
libraries it needs newer than the system's with `apt-get download` under a private apt
configuration (its own sources file, lists, caches and an empty dpkg status: the system's
apt configuration and package database are never read or written), unpacks them with
`dpkg -x`, and runs QEMU through the unpacked dynamic loader with `--library-path`, so the
system's own libc and programs are untouched. Firmware comes from the system's QEMU 7.2
packages (`-L`).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

from pagefs.conformance.vm.image import DEFAULT_CACHE as VM_CACHE
from pagefs.conformance.vm.machine import Qemu

DEFAULT_CACHE = VM_CACHE.parent / "qemu11"
MIRROR = "http://deb.debian.org/debian"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
PACKAGES = ("qemu-system-x86", "libc6", "libcapstone5", "libfuse3-4", "libaio1t64",
            "libslirp0", "libnettle8t64", "libhogweed6t64")
WANTED_VERSION = "11.1."
# bookworm's firmware (BIOS, option ROMs, keymaps), as QEMU 7.2 installed it.
FIRMWARE = ("/usr/share/qemu", "/usr/share/seabios", "/usr/lib/ipxe/qemu")
LIBRARY_DIRS = ("lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu")


class Qemu11Error(RuntimeError):
    """QEMU 11.1 could not be fetched or does not run; the message says why."""


def _private_apt(cache: Path) -> list[str]:
    """apt-get options that keep every file apt touches under `cache/apt`."""
    apt = cache / "apt"
    for d in ("lists/partial", "archives/partial", "etc/preferences.d", "etc/apt.conf.d"):
        (apt / d).mkdir(parents=True, exist_ok=True)
    (apt / "sources.list").write_text(f"deb [signed-by={KEYRING}] {MIRROR} unstable main\n")
    (apt / "status").touch()
    return ["-o", f"Dir::Etc::sourcelist={apt / 'sources.list'}",
            "-o", "Dir::Etc::sourceparts=-",
            "-o", f"Dir::Etc::preferencesparts={apt / 'etc/preferences.d'}",
            "-o", f"Dir::Etc::parts={apt / 'etc/apt.conf.d'}",
            "-o", f"Dir::State::Lists={apt / 'lists'}",
            "-o", f"Dir::State::status={apt / 'status'}",
            "-o", f"Dir::Cache={apt}",
            "-o", f"Dir::Cache::archives={apt / 'archives'}",
            "-o", "APT::Architecture=amd64", "-o", "APT::Architectures=amd64",
            "-o", "Debug::NoLocking=1"]


def _run(args: list[str], cwd: Path | None = None) -> str:
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise Qemu11Error(f"{' '.join(args[:2])} … failed: {done.stderr.strip()[-600:]}")
    return done.stdout


def qemu(cache: Path = DEFAULT_CACHE) -> Qemu:
    """The unpacked QEMU 11.1, runnable; Qemu11Error with the fix when it is not there."""
    root = cache / "root"
    loader = root / "lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
    if not loader.exists():
        loader = root / "usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
    binary = root / "usr/bin/qemu-system-x86_64"
    if not (loader.exists() and binary.exists()):
        raise Qemu11Error(f"QEMU 11.1 is not unpacked in {cache}: run `make qemu11`")
    library_path = ":".join([*(str(root / d) for d in LIBRARY_DIRS),
                             "/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu"])
    command = (str(loader), "--library-path", library_path, str(binary))
    version = _run([*command, "--version"]).splitlines()[0]
    found = re.search(r"version (\S+)", version)
    if not found or not found.group(1).startswith(WANTED_VERSION):
        raise Qemu11Error(f"{binary} says {version!r}, not QEMU {WANTED_VERSION}x")
    return Qemu(command, tuple(d for d in FIRMWARE if Path(d).is_dir()), found.group(1))


def fetch(cache: Path = DEFAULT_CACHE) -> Qemu:
    options = _private_apt(cache)
    debs = cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    debs.chmod(0o777)  # apt's download user writes here
    if not list((cache / "apt/lists").glob("*Packages*")):
        _run(["apt-get", *options, "update"])
    for package in PACKAGES:
        if not list(debs.glob(f"{package}_*.deb")):
            _run(["apt-get", *options, "download", package], cwd=debs)
    for deb in sorted(debs.glob("*.deb")):
        _run(["dpkg-deb", "-x", str(deb), str(cache / "root")])
    return qemu(cache)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make qemu11", description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE,
                        help="where QEMU 11.1 is unpacked (default %(default)s)")
    args = parser.parse_args(argv)
    try:
        found = fetch(args.cache)
    except Qemu11Error as e:
        print(f"make qemu11: {e}", file=sys.stderr)
        return 1
    print(f"QEMU {found.version}: {' '.join(found.command)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
