"""pagefs-mount's options: -o allow_other,ro,attr_timeout=S,entry_timeout=S and flags."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MountOptions:
    """What the user asked of the mount. Timeouts are seconds the kernel may trust a
    name or attributes without asking; 0 (the default) asks every time, so changes made
    on the host show at once."""

    read_only: bool = False
    allow_other: bool = False
    attr_timeout: float = 0.0
    entry_timeout: float = 0.0
    passthrough: bool = True


def _seconds(name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name} must be a number of seconds, not '{text}'") from None
    if not 0 <= value < 2**32:
        raise ValueError(f"{name} must be 0 or more seconds, not '{text}'")
    return value


def parse(option_text: list[str], *, read_only: bool, passthrough: bool) -> MountOptions:
    """MountOptions from the -o arguments (each a comma-separated list); ValueError names
    the option that is not understood."""
    fields: dict[str, object] = {"read_only": read_only, "passthrough": passthrough}
    for text in option_text:
        for item in filter(None, text.split(",")):
            name, _, value = item.partition("=")
            if name in ("ro", "allow_other", "rw") and value:
                raise ValueError(f"option {name} takes no value")
            if name == "ro":
                fields["read_only"] = True
            elif name == "rw":
                fields["read_only"] = read_only
            elif name == "allow_other":
                fields["allow_other"] = True
            elif name in ("attr_timeout", "entry_timeout"):
                fields[name] = _seconds(name, value)
            else:
                raise ValueError(f"unknown mount option '{item}' (known: ro, allow_other, "
                                 "attr_timeout=S, entry_timeout=S)")
    return MountOptions(**fields)  # type: ignore[arg-type]


def split_seconds(seconds: float) -> tuple[int, int]:
    """A timeout as FUSE carries it: whole seconds and nanoseconds."""
    whole = int(seconds)
    return whole, min(int(round((seconds - whole) * 1e9)), 999_999_999)
