"""The spec's contracts (`pre:`/`post:` lines of its docstrings), evaluated on concrete calls.

CrossHair checks these symbolically, and for the operations it confirms none of them
within its budget. The exhaustive enumeration (``enumeration.py``) calls the spec's
operations on every reachable state of its bound, and evaluates here every `post:` of
the operation it called, with the arguments bound by name and ``__return__`` the
outcomes, in the namespace of the module that defines it: exactly what CrossHair would
evaluate on that input.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from types import CodeType


@dataclass(frozen=True)
class Condition:
    kind: str  # "pre" or "post"
    text: str
    code: CodeType  # the compiled expression


@cache
def conditions(function: Callable[..., object]) -> tuple[Condition, ...]:
    """The function's contract lines, compiled."""
    found = []
    lines = (inspect.getdoc(function) or "").splitlines()
    for n, line in enumerate(lines):
        head, _, text = line.strip().partition(":")
        if head not in ("pre", "post") or not text.strip():
            continue
        text = text.strip()
        for more in lines[n + 1:]:  # a condition may go on over more indented lines
            if _complete(text) or not more.startswith(" "):
                break
            text += " " + more.strip()
        found.append(Condition(head, text, compile(text, "<contract>", "eval")))
    return tuple(found)


def _complete(text: str) -> bool:
    try:
        compile(text, "<contract>", "eval")
    except SyntaxError:
        return False
    return True


def broken(function: Callable[..., object], args: tuple[object, ...], result: object
           ) -> list[str]:
    """The `post:` conditions that are false for this call (when every `pre:` holds)."""
    bound = inspect.signature(function).bind(*args)
    scope = {**function.__globals__, **bound.arguments}
    if not all(eval(c.code, scope) for c in conditions(function) if c.kind == "pre"):  # noqa: S307
        return []
    scope["__return__"] = result
    return [c.text for c in conditions(function)
            if c.kind == "post" and not eval(c.code, scope)]  # noqa: S307


def count(function: Callable[..., object]) -> int:
    """How many `post:` conditions one call of ``function`` evaluates."""
    return sum(c.kind == "post" for c in conditions(function))
