"""How fast the training data pipeline feeds the steps, with 0, 1, 2 ... DataLoader workers.

Usage::

    python benchmarks/data_pipeline.py                        # workers 0 1 2, CPU
    python benchmarks/data_pipeline.py --workers 0 2 4 8 --device cuda
    python benchmarks/data_pipeline.py --data ../shared/data --steps 60 --repeats 2

For each worker count (alternated, ``--repeats`` times, so that a change of the machine's
load hits all of them alike), on the EM ISBI 2012 sections with the em preset and the
default recipe (256-pixel patches, batch 4):

1. **loader**: the batches per second the pipeline alone makes (crappifying in the main
   process or in the workers, pinned memory on CUDA), the speed an accelerator could
   train at if nothing else limited it;
2. **training**: ``--steps`` generator pretraining steps (no GAN, no validation between),
   the mean step time after the first five steps.

On the CPU the training steps use every core, so workers compete with them; on a GPU the
cores are free and the workers are what keeps the GPU busy. The machine's load average
is printed with the figures.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the decrappify command does

import argparse
import contextlib
import csv
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DATA, help=f"shared data ({DATA})")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=40, help="training steps per run (40)")
    parser.add_argument("--batches", type=int, default=30, help="loader batches per run (30)")
    parser.add_argument("--repeats", type=int, default=1)
    return parser.parse_args(argv)


def loader_speed(images: list[Path], workers: int, device: str, batches: int) -> float:
    """Batches per second the training stream alone delivers (on the device)."""
    import torch

    from decrappify.api import train_config
    from decrappify.train.streams import DataStreams

    cfg = train_config(preset="em", device=device, overrides={"data.num_workers": workers})
    cfg = cfg.resolved()
    data = DataStreams(
        cfg,
        [str(p) for p in images],
        None,
        cfg.resolved_crappify(),
        device=torch.device(device),
        autocast=contextlib.nullcontext,
        channels_last=False,
    )
    stream = data.device_batches("pretrain_generator", 0, stop=batches + 2)
    next(stream)  # workers started, first batch made
    start = time.perf_counter()
    n = 0
    for lr, _ in stream:
        n += 1
        if lr.is_cuda:
            torch.cuda.synchronize()
    return n / (time.perf_counter() - start)


def training_speed(images: list[Path], workers: int, device: str, steps: int) -> float:
    """Mean seconds per generator pretraining step after the first five."""
    from decrappify import api

    out = Path(tempfile.mkdtemp(prefix="data_pipeline_"))
    try:
        api.train(
            [str(p) for p in images],
            out / "run",
            preset="em",
            device=device,
            overrides={
                "data.num_workers": workers,
                "gan.max_steps": 0,
                "pretrain_generator.steps": steps,
                "pretrain_generator.checkpoint_every": steps,
                "preview_every": 0,
            },
        )
        with (out / "run" / "log.csv").open(newline="") as f:
            times = [float(r["time_s"]) for r in csv.DictReader(f) if r["loss"]]
        return (times[-2] - times[4]) / (len(times) - 6)  # the last row holds a validation
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    images = sorted((args.data / "em" / "isbi2012_train").glob("*.tif"))
    if not images:
        raise SystemExit(f"{args.data}/em/isbi2012_train: no images; pass --data")
    print(f"{os.cpu_count()} cores, device {args.device}, load average {os.getloadavg()}")
    loader: dict[int, list[float]] = {w: [] for w in args.workers}
    steps: dict[int, list[float]] = {w: [] for w in args.workers}
    for _ in range(args.repeats):
        for w in args.workers:
            loader[w].append(loader_speed(images, w, args.device, args.batches))
            steps[w].append(training_speed(images, w, args.device, args.steps))
            print(f"workers {w}: loader {loader[w][-1]:.2f} batches/s, {steps[w][-1]:.3f} s/step")
    print(f"\nload average after {os.getloadavg()}")
    print("| workers | loader (batches/s) | training (s/step) |")
    print("|---:|---:|---:|")
    for w in args.workers:
        print(f"| {w} | {statistics.median(loader[w]):.2f} | {statistics.median(steps[w]):.3f} |")
    print(json.dumps({"loader": loader, "steps": steps}))


if __name__ == "__main__":
    main()
