"""Print the line counts of the largest modules and fail when one is over the limit.

Run by ``make lint``::

    python tools/module_sizes.py            # src/, limit 600 lines, the 12 largest shown
    python tools/module_sizes.py --limit 500 --show 20 src/decrappify/predict

A module that does too much is hard to read, to test and to change; split it along its
responsibilities (see ``docs/architecture.md``) rather than raising the limit.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

#: Largest module allowed, in lines.
LIMIT = 600


def line_counts(root: Path) -> list[tuple[int, Path]]:
    """Line counts of the Python files below ``root``, largest first.

    Parameters
    ----------
    root : Path
        A folder (or one file).

    Returns
    -------
    list of (int, Path)
        Lines and path, sorted by decreasing lines then path.
    """
    files = [root] if root.is_file() else sorted(root.rglob("*.py"))
    counts = [(len(path.read_text(encoding="utf-8").splitlines()), path) for path in files]
    return sorted(counts, key=lambda item: (-item[0], str(item[1])))


def main(argv: list[str] | None = None) -> int:
    """Print the largest modules; return 1 when one exceeds the limit.

    Parameters
    ----------
    argv : list of str or None
        Command-line arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit status.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("roots", nargs="*", type=Path, default=[Path("src")])
    parser.add_argument("--limit", type=int, default=LIMIT, help="largest module allowed")
    parser.add_argument("--show", type=int, default=12, help="how many modules to list")
    args = parser.parse_args(argv)
    counts = sorted(
        (item for root in args.roots for item in line_counts(root)),
        key=lambda item: (-item[0], str(item[1])),
    )
    for lines, path in counts[: args.show]:
        mark = "  <- over the limit" if lines > args.limit else ""
        print(f"{lines:7d} {path}{mark}")
    print(f"{sum(n for n, _ in counts):7d} total in {len(counts)} modules")
    over = [(n, p) for n, p in counts if n > args.limit]
    if over:
        names = ", ".join(f"{p} ({n})" for n, p in over)
        print(f"error: {len(over)} module(s) over {args.limit} lines: {names}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
