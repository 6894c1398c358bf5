"""python -m pagefs.conformance.exerciser [--build] [fsx options] FILE

With --build, print the path of the static binary (for copying into a guest) and exit;
otherwise run the exerciser with the given options, building it first when needed.
"""

from __future__ import annotations

import os
import sys

from pagefs.conformance.exerciser.build import BuildError, binary


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        path = binary()
    except BuildError as e:
        print(f"pagefs exerciser: {e}", file=sys.stderr)
        return 2
    if args == ["--build"]:
        print(path)
        return 0
    sys.stdout.flush()
    os.execv(path, [path, *args])


if __name__ == "__main__":
    sys.exit(main())
