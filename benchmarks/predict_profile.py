"""Profile one ``decrappify predict`` command: where its time goes, imports included.

Runs ``decrappify predict ARGS`` once, as a whole process with ``--threads`` threads, and
prints:

* **imports** (``-X importtime`` of the same command): the packages the command imported,
  by cumulative import time, with the module that first pulled each in -- the per-command
  fixed cost that is ours to cut (torch's own is not);
* **profile**: the functions with the most time, from py-spy (sampling every thread, when
  ``py-spy`` is on PATH or beside this Python) or else cProfile (one profiler per thread,
  merged: their times add up).

Usage: python benchmarks/predict_profile.py [--threads 2] [--no-profile] [--top 25]
       -- MODEL INPUTS --out DIR [predict options]
"""

from __future__ import annotations

import argparse
import io
import re
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from _common import machine, machine_line, run_timed, thread_env

SCRIPT = str(Path(__file__).resolve())


def child_cprofile(stats_path: str, *argv: str) -> int:
    """Run the decrappify CLI under cProfile, one profiler per thread, merged."""
    import cProfile
    import pstats
    import threading

    profilers = [cProfile.Profile()]

    def start_thread_profiler(*_: Any) -> None:
        profiler = cProfile.Profile()  # the first profile event of a new thread
        profilers.append(profiler)
        profiler.enable()

    threading.setprofile(start_thread_profiler)
    sys.argv = ["decrappify", *argv]
    code: Any = 0
    profilers[0].enable()
    try:
        from decrappify.cli import main as cli

        cli()
    except SystemExit as stop:
        code = stop.code
    finally:
        profilers[0].disable()
        threading.setprofile(None)
    stats = pstats.Stats(profilers[0])
    for profiler in profilers[1:]:
        stats.add(profiler)
    stats.dump_stats(stats_path)
    return code if isinstance(code, int) else int(code is not None)


def import_table(log: Path, top: int) -> str:
    """Top-level packages by cumulative import time, from ``-X importtime`` output."""
    entries = []
    for line in log.read_text(errors="replace").splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \|( *)(\S+)", line)
        if match:
            entries.append((int(match.group(1)), len(match.group(2)) // 2, match.group(3)))
    rows: dict[str, tuple[int, int, str]] = {}  # package -> (depth, cumulative, parent)
    for i, (cumulative, depth, name) in enumerate(entries):
        package = name.split(".")[0]
        if name != package or (package in rows and rows[package][0] <= depth):
            continue  # a package's own entry, where it was first imported from
        parent = next((n for _, d, n in entries[i + 1 :] if d < depth), "(the command)")
        rows[package] = (depth, cumulative, parent)
    total = sum(c for c, d, _ in entries if d == 0)
    lines = [
        f"imports: {total / 1e6:.2f} s in all (wall, one thread)",
        "   s  package (first pulled in by)",
    ]
    for package, (_, cumulative, parent) in sorted(rows.items(), key=lambda r: -r[1][1])[:top]:
        lines.append(f"{cumulative / 1e6:5.2f}  {package} ({parent})")
    return "\n".join(lines)


def pyspy_table(raw: Path, rate: int, top: int) -> str:
    """Top functions by cumulative samples, from py-spy's collapsed stacks (all threads)."""
    cumulative: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";")]
        total += int(count)
        own[frames[-1]] += int(count)
        for frame in set(frames):
            cumulative[frame] += int(count)
    lines = [f"py-spy, {total} samples at {rate} Hz over all threads (idle waits not sampled)"]
    for title, counts, n in (("cumulative", cumulative, top), ("self", own, top // 2)):
        lines += [f"by {title} samples:", f"{'cum s':>8} {'cum %':>6} {'self s':>7}  function"]
        for frame, _ in counts.most_common(n):
            lines.append(
                f"{cumulative[frame] / rate:8.2f} {100 * cumulative[frame] / max(total, 1):5.1f}% "
                f"{own[frame] / rate:7.2f}  {frame}"
            )
    return "\n".join(lines)


def profile(command: list[str], env: dict[str, str], workdir: Path, top: int) -> str:
    """Run the command under py-spy (or cProfile); the top functions."""
    import pstats

    spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if spy:
        raw, rate = workdir / "pyspy.txt", 100
        cmd = [spy, "record", "--format", "raw", "--rate", str(rate), "-o", str(raw), "--"]
        run = run_timed([*cmd, *command], env, workdir / "pyspy.log")
        if run.returncode == 0 and raw.is_file():
            return f"wall {run.wall:.1f} s under py-spy\n" + pyspy_table(raw, rate, top)
        print(f"py-spy failed (exit {run.returncode}, see {run.log}); using cProfile instead")
    stats_file = workdir / "cprofile.pstats"
    args = command[command.index("predict") :]
    run = run_timed(
        [sys.executable, SCRIPT, "--child", str(stats_file), *args], env, workdir / "cprofile.log"
    )
    if run.returncode != 0 or not stats_file.is_file():
        return f"cProfile run failed (exit {run.returncode}); see {run.log}"
    text = io.StringIO()
    stats = pstats.Stats(str(stats_file), stream=text)
    stats.strip_dirs().sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top // 2)
    head = f"cProfile, all threads merged (their times add up), wall {run.wall:.1f} s"
    return head + "\n" + text.getvalue().strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="threads (default 2)")
    parser.add_argument("--top", type=int, default=25, help="rows per table (default 25)")
    parser.add_argument("--no-profile", action="store_true", help="imports only")
    parser.add_argument("predict", nargs=argparse.REMAINDER, help="-- MODEL INPUTS --out DIR ...")
    args = parser.parse_args()
    predict = [a for a in args.predict if a != "--"]
    if "--out" not in predict:
        parser.error("give the predict command's arguments after --, with --out DIR")
    out = Path(predict[predict.index("--out") + 1])
    env = thread_env(args.threads)
    base = [sys.executable, "-m", "decrappify", "predict", *predict, "--threads", str(args.threads)]
    print(machine_line(machine()))
    with tempfile.TemporaryDirectory(prefix="decrappify-profile-") as tmp:
        workdir = Path(tmp)
        shutil.rmtree(out, ignore_errors=True)
        importtime = [sys.executable, "-X", "importtime", *base[1:]]
        run = run_timed(importtime, env, workdir / "importtime.log")
        print(f"\nthe command: wall {run.wall:.2f} s, user {run.user:.2f} s, sys {run.sys:.2f} s")
        print(import_table(Path(run.log), args.top))
        if not args.no_profile:
            shutil.rmtree(out, ignore_errors=True)
            print("\n" + profile(base, env, workdir, args.top))
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        sys.exit(child_cprofile(*sys.argv[2:]))
    sys.exit(main())
