"""pagefs-guest: try a share by hand.

    pagefs-guest SOCKET ls [PATH]           names in a directory ('/' after directories)
    pagefs-guest SOCKET cat PATH            file to stdout
    pagefs-guest SOCKET put LOCAL PATH      local file ('-': stdin) to the share
    pagefs-guest SOCKET get PATH LOCAL      file from the share to a local file
    pagefs-guest SOCKET stat PATH           size, mode, links, mtime
    pagefs-guest SOCKET mkdir|rmdir|rm PATH
    pagefs-guest SOCKET mv SOURCE DEST
    pagefs-guest SOCKET ln TARGET PATH      symlink
    pagefs-guest SOCKET readlink PATH
    pagefs-guest SOCKET truncate PATH SIZE  SIZE in bytes, or with K, M, G or T

Every failure is one line on stderr and a non-zero exit status.
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
import time
from collections.abc import Callable
from typing import NoReturn

from pagefs.impl.guest.share import Share
from pagefs.impl.transport.sizes import (
    SIZE_SYNTAX,
    WINDOW_ALIGNMENT,
    parse_size,
    parse_window_size,
)

COMMANDS: dict[str, tuple[int, str]] = {
    # name: (number of operands, usage of the operands)
    "ls": (-1, "[PATH]"),
    "cat": (1, "PATH"),
    "put": (2, "LOCAL PATH"),
    "get": (2, "PATH LOCAL"),
    "stat": (1, "PATH"),
    "mkdir": (1, "PATH"),
    "rmdir": (1, "PATH"),
    "rm": (1, "PATH"),
    "mv": (2, "SOURCE DEST"),
    "ln": (2, "TARGET PATH"),
    "readlink": (1, "PATH"),
    "truncate": (2, "PATH SIZE"),
}


def _window_size(text: str) -> int:
    """--window-size: 0 (no window), or a window size pagefs-host would offer."""
    try:
        size = parse_size(text)
        return size if size == 0 else parse_window_size(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


# How an operand's text becomes its value, by the name its usage gives it; unnamed here
# means the text itself (a path).
OPERAND_TYPES: dict[str, Callable[[str], object]] = {"SIZE": parse_size}


def _operands(command: str, texts: list[str]) -> list[object]:
    """The operands of `command` as values; ValueError naming the bad one."""
    names = COMMANDS[command][1].strip("[]").split()
    return [OPERAND_TYPES.get(name, str)(text) for name, text in zip(names, texts, strict=False)]


def _ls(share: Share, path: str = "/") -> None:
    for name in sorted(share.listdir(path)):
        full = f"{path.rstrip('/')}/{name}"
        try:
            mode = share.lstat(full).st_mode
        except FileNotFoundError:  # removed by the host meanwhile
            mode = 0
        print(name + ("/" if stat.S_ISDIR(mode) else ""))


class _StdoutClosed(Exception):
    """Whoever read our stdout has gone (`cat | head`): stop quietly."""


def _cat(share: Share, path: str) -> None:
    with share.open(path) as handle:
        while chunk := handle.read(1 << 20):
            try:
                sys.stdout.buffer.write(chunk)
                sys.stdout.buffer.flush()
            except BrokenPipeError:
                raise _StdoutClosed from None


def _put(share: Share, local: str, path: str) -> None:
    source = sys.stdin.buffer if local == "-" else open(local, "rb")  # noqa: SIM115
    with source, share.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC) as handle:
        while chunk := source.read(1 << 20):
            handle.write(chunk)


def _get(share: Share, path: str, local: str) -> None:
    with share.open(path) as handle, open(local, "wb") as target:
        while chunk := handle.read(1 << 20):
            target.write(chunk)


def _stat(share: Share, path: str) -> None:
    st = share.lstat(path)
    print(f"size {st.st_size}  mode {stat.filemode(st.st_mode)} ({st.st_mode & 0o7777:o})"
          f"  links {st.st_nlink}  inode {st.st_ino}"
          f"  mtime {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(st.st_mtime))} UTC")


def _readlink(share: Share, path: str) -> None:
    print(share.readlink(path))


ACTIONS: dict[str, Callable[..., None]] = {
    "ls": _ls,
    "cat": _cat,
    "put": _put,
    "get": _get,
    "stat": _stat,
    "mkdir": lambda share, path: share.mkdir(path),
    "rmdir": lambda share, path: share.rmdir(path),
    "rm": lambda share, path: share.unlink(path),
    "mv": lambda share, source, dest: share.rename(source, dest),
    "ln": lambda share, target, path: share.symlink(target, path),
    "readlink": _readlink,
    "truncate": lambda share, path, size: share.truncate(path, size),
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, not the usage block
        self.exit(2, f"{self.prog}: {message} (see --help)\n")


def _parser() -> argparse.ArgumentParser:
    usage = "\n".join(f"  %(prog)s SOCKET {name} {ops}" for name, (_, ops) in COMMANDS.items())
    parser = _Parser(
        prog="pagefs-guest",
        description="A guest's view of a pagefs export (or any virtio-fs daemon).",
        usage=f"\n{usage}",
    )
    parser.add_argument("socket", help="the daemon's vhost-user socket")
    parser.add_argument("command", choices=sorted(COMMANDS))
    parser.add_argument("operands", nargs="*")
    parser.add_argument("--window-size", type=_window_size, default=None, metavar="SIZE",
                        help=f"DAX window to reserve: {SIZE_SYNTAX}, a multiple of "
                        f"{WINDOW_ALIGNMENT >> 20}M, or 0 for READ/WRITE only "
                        "(default: the size the daemon offers)")
    return parser


def main(argv: list[str] | None = None) -> int:
    from pagefs.impl.guest.connect import connect

    parser = _parser()
    args = parser.parse_args(argv)
    arity, operands_usage = COMMANDS[args.command]
    if (arity >= 0 and len(args.operands) != arity) or (arity < 0 and len(args.operands) > 1):
        parser.error(f"usage: {args.command} {operands_usage}")
    try:
        operands = _operands(args.command, args.operands)
    except ValueError as err:
        parser.error(f"{args.command}: {err}")
    what = " ".join([args.command, *args.operands])
    try:
        with connect(args.socket, window_size=args.window_size) as share:
            ACTIONS[args.command](share, *operands)
    except _StdoutClosed:
        sys.stdout = None  # nothing more to flush into the closed pipe at exit
        return 1
    except OSError as err:
        reason = os.strerror(err.errno) if err.errno else str(err)
        print(f"pagefs-guest: {what}: {reason}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
