"""Print decrappify's requirements from pyproject.toml, one per line, leaving some out.

The Python 3.12 leg of CI (``make test-py312``) installs the project without PyTorch:
no CPU build of torch for 3.12 is reachable from CI (only the 3.11 file on disk; the
index's build pulls several GB of CUDA libraries), so it tests the torch-free modules
(io, crappify, metrics, config, sample) with the newest tifffile and zarr. Usage::

    python tools/requirements.py --extra test --without torch > requirements.txt
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]


def requirements(extras: list[str], without: set[str]) -> list[str]:
    """List the dependencies and those of ``extras`` (recursively), minus ``without``."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    optional = project.get("optional-dependencies", {})
    found: list[str] = list(project["dependencies"])
    todo, seen = list(extras), set()
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for req in optional[extra]:
            own = re.fullmatch(r"decrappify\[(.+)\]", req.replace(" ", ""))
            if own:
                todo += own.group(1).split(",")
            else:
                found.append(req)
    keep = []
    for req in found:
        name = re.split(r"[\s\[<>=!~;]", req, maxsplit=1)[0].lower()
        if name not in without and req not in keep:
            keep.append(req)
    return keep


def main(argv: list[str] | None = None) -> int:
    """Print the requirements."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--extra", action="append", default=[], help="an extra (repeat)")
    parser.add_argument("--without", action="append", default=[], help="a name to leave out")
    args = parser.parse_args(argv)
    sys.stdout.write("\n".join(requirements(args.extra, {n.lower() for n in args.without})) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
