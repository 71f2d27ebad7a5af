"""Does ``decrappify train --time-budget`` hold its budget while other processes use the cores?

Usage::

    python benchmarks/train_under_load.py                      # 3 min, one competitor
    python benchmarks/train_under_load.py --budget 3m --competitors 2
    python benchmarks/train_under_load.py --policy both --budget 1m    # wait policies
    python benchmarks/train_under_load.py --data ../shared/data --keep runs/load

What it does, for each wait policy asked for (``passive``: what the tool sets,
``OMP_WAIT_POLICY=PASSIVE``; ``default``: libgomp's own, spinning before it sleeps):

1. starts ``--competitors`` CPU-bound processes (each spins one core) and waits a second;
2. runs ``decrappify train`` as a fresh process on the EM ISBI 2012 sections (the em
   preset, 4x, the default recipe) with ``--time-budget``, while the competitors run;
3. reads the run folder: the training time of the run (``checkpoints/state.json``: the
   budget counts from the first step), the step times of ``log.csv``, the last validation
   + checkpoint time, and the time-budget notes of the history;
4. prints whether the run ended within budget + one step + one validation, how far
   inside or past it, and the steps per second (the competitors are stopped after).

The machine's load average before and after is printed: on a shared machine the other
jobs are competitors too; say so with the figures.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
SPIN = "while True:\n    pass\n"
POLICIES = {"passive": "PASSIVE", "default": ""}  # "" = unset for libgomp, kept by the tool


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DATA, help=f"shared data ({DATA})")
    parser.add_argument("--budget", default="3m", help="--time-budget of the run (3m)")
    parser.add_argument("--competitors", type=int, default=1, help="CPU-bound processes (1)")
    parser.add_argument("--policy", choices=[*POLICIES, "both"], default="passive")
    parser.add_argument("--threads", type=int, default=None, help="num_threads (all cores)")
    parser.add_argument("--keep", type=Path, default=None, help="keep the run folders here")
    return parser.parse_args(argv)


def run_once(args: argparse.Namespace, policy: str, out: Path) -> dict[str, Any]:
    """Train under competitors with one wait policy; the figures of the run."""
    images = args.data / "em" / "isbi2012_train"
    if not images.is_dir():
        raise SystemExit(f"{images}: not found; pass --data (the folder holding em/)")
    env = {**os.environ, "OMP_WAIT_POLICY": POLICIES[policy]}
    command = [sys.executable, "-m", "decrappify", "train", "--hr", str(images), "-o", str(out)]
    command += ["--preset", "em", "--time-budget", args.budget, "--device", "cpu", "-q"]
    if args.threads:
        command += ["--set", f"num_threads={args.threads}"]
    spinners = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(args.competitors)]
    try:
        time.sleep(1.0)
        start = time.perf_counter()
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()
    if done.returncode != 0:
        raise SystemExit(f"decrappify train failed:\n{done.stderr[-3000:]}")
    return measure(out, wall)


def measure(run: Path, wall: float) -> dict[str, Any]:
    """The budget, training time, step times and notes of a finished run folder."""
    state = json.loads((run / "checkpoints" / "state.json").read_text())
    config = (run / "train.yaml").read_text()
    budget = next(
        float(ln.split(":")[1]) for ln in config.splitlines() if ln.startswith("time_budget")
    )
    with (run / "log.csv").open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["loss"] or r["critic_loss"]]
    # a step's time: between two rows of one phase, neither of them with a validation
    # (a row is written after its validation, its checkpoint after the row)
    steps = [
        float(b["time_s"]) - float(a["time_s"])
        for a, b in zip(rows, rows[1:], strict=False)
        if a["phase"] == b["phase"] and not a["val_psnr"] and not b["val_psnr"]
    ]
    notes = [h["note"] for h in state["history"] if "time budget" in h.get("note", "")]
    return {
        "budget_s": budget,
        "training_s": round(state["elapsed"], 1),
        "wall_s": round(wall, 1),
        "steps": len(rows),
        "counts": state["counts"],
        "mean_step_s": round(sum(steps) / len(steps), 3) if steps else None,
        "longest_step_s": round(max(steps), 3) if steps else None,
        "validation_s": round(state["overhead"], 2),
        "budget_notes": notes,
    }


def report(policy: str, figures: dict[str, Any], competitors: int) -> None:
    budget, trained = figures["budget_s"], figures["training_s"]
    allowed = budget + (figures["longest_step_s"] or 0) + figures["validation_s"]
    verdict = "within" if trained <= allowed else "PAST"
    print(f"\n== OMP wait policy {policy}, {competitors} competing process(es)")
    print(
        f"budget {budget:.0f} s, trained {trained:.1f} s ({trained - budget:+.1f} s), "
        f"{verdict} budget + one step ({figures['longest_step_s']} s) + one validation "
        f"({figures['validation_s']} s) = {allowed:.1f} s"
    )
    print(
        f"whole command {figures['wall_s']:.1f} s (start-up and the final save included); "
        f"{figures['steps']} steps, {figures['mean_step_s']} s/step typical; counts "
        f"{figures['counts']}"
    )
    for note in figures["budget_notes"]:
        print(f"  {note}")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    policies = list(POLICIES) if args.policy == "both" else [args.policy]
    print(f"{os.cpu_count()} cores, load average before {os.getloadavg()}")
    root = Path(tempfile.mkdtemp(prefix="train_under_load_")) if args.keep is None else args.keep
    results = {}
    try:
        for policy in policies:
            out = root / f"run_{policy}"
            shutil.rmtree(out, ignore_errors=True)
            results[policy] = run_once(args, policy, out)
            report(policy, results[policy], args.competitors)
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    print(f"\nload average after {os.getloadavg()}")
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
