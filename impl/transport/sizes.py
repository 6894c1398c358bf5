"""Byte counts as users write them, and the rule a DAX window's size must follow.

One parser for every command line (pagefs-host --window-size, pagefs-guest
--window-size and its operands), so "64M" means the same everywhere.
"""

from __future__ import annotations

# The guest maps the window in ranges of 2 MiB (as Linux's fs/fuse/dax.c does), so a
# window is a whole number of them.
WINDOW_ALIGNMENT = 2 << 20
# SHMEM_CONFIG carries sizes as u64; 2^63 keeps every offset within a signed off_t.
MAX_WINDOW_SIZE = 1 << 63
UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
SIZE_SYNTAX = "bytes, or a number with K, M, G or T for KiB, MiB, GiB or TiB"


def parse_size(text: str) -> int:
    """A non-negative byte count: digits, optionally followed by K, M, G or T.
    ValueError (whose message names the text and the syntax) otherwise."""
    scale = UNITS.get(text[-1:].upper(), 1)
    digits = text[:-1] if scale > 1 else text
    # isdigit() alone admits non-ASCII digits ('²') that int() refuses
    if not (digits.isascii() and digits.isdigit()):
        raise ValueError(f"not a size: {text!r} ({SIZE_SYNTAX})")
    return int(digits) * scale


def window_size_problem(size: int, alignment: int = WINDOW_ALIGNMENT) -> str | None:
    """Why `size` cannot be a DAX window's size, or None if it can. The transport alone
    needs only whole pages (alignment = the page size); a guest needs whole ranges."""
    if size <= 0 or size % alignment or size > MAX_WINDOW_SIZE:
        return (f"window size {size} is not a positive multiple of "
                f"{_bytes(alignment)} no larger than 2^63")
    return None


def _bytes(size: int) -> str:
    return f"{size >> 20} MiB" if size % (1 << 20) == 0 else f"{size} bytes"


def parse_window_size(text: str) -> int:
    """parse_size() of a DAX window's size; ValueError if it breaks the window rule."""
    size = parse_size(text)
    problem = window_size_problem(size)
    if problem:
        raise ValueError(problem)
    return size
