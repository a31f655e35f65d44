"""A child (immunreg.childprocess) that writes `LINES` long progress lines, then its result."""

from __future__ import annotations

import sys

from immunreg.childprocess import report

LINES = 40
LINE = "x" * 100_000  # 4 MB in all: far more than a pipe holds


def main() -> int:
    for i in range(LINES):
        report("progress", {"i": i, "text": LINE})
    report("result", "done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
