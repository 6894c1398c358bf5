"""LIMITS: every integer a guest sends is range-checked here, before any host call.

The wire's offsets and sizes are u64; the host's off_t is signed 64-bit. A value the
host cannot represent must be a clear errno for that request, never an OverflowError
deep in a system call: an offset past the largest file offset is EINVAL (a negative
off_t to the kernel), a size or an end past it EFBIG (the file cannot grow so far),
a mapping's file range past it EOVERFLOW. The rules go by field name, so a request
layout added later is checked as soon as its fields are named like these.
"""

from __future__ import annotations

import errno
from dataclasses import fields, is_dataclass

from pagefs.impl.machine import MAX_FILE_OFFSET
from pagefs.impl.protocol import constants as c

# field name -> errno when the value alone is past MAX_FILE_OFFSET
_ALONE = {"offset": errno.EINVAL, "foffset": errno.EOVERFLOW, "length": errno.EINVAL,
          "off_in": errno.EINVAL, "off_out": errno.EINVAL, "len": errno.EINVAL}
# (start, extent) fields whose sum is a file offset: past MAX_FILE_OFFSET is this errno
_ENDS = ((("offset", "length"), errno.EFBIG), (("foffset", "length"), errno.EOVERFLOW))


def check(opcode: int, body: object) -> None:
    """OSError with the request's errno when a wire integer is out of the host's range."""
    if not is_dataclass(body):
        return
    values = {f.name: getattr(body, f.name) for f in fields(body)}
    for name, code in _ALONE.items():
        value = values.get(name)
        if isinstance(value, int) and not 0 <= value <= MAX_FILE_OFFSET:
            raise OSError(code, f"{name} {value:#x} past the largest file offset")
    for (start, extent), code in _ENDS:
        if isinstance(values.get(start), int) and isinstance(values.get(extent), int):
            if values[start] + values[extent] > MAX_FILE_OFFSET:
                raise OSError(code, f"{start} + {extent} past the largest file offset")
    if opcode == c.Opcode.SETATTR and values["valid"] & c.SetattrValid.SIZE:
        if values["size"] > MAX_FILE_OFFSET:
            raise OSError(errno.EFBIG, f"size {values['size']:#x} past the largest file size")
