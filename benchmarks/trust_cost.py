"""Benchmark: the extra cost of the trust maps (``predict --consistency`` and ``--tta``).

The same images are predicted four ways, in this process, through
:func:`decrappify.api.predict` (OME-Zarr outputs, the CLI's defaults otherwise, or
``--tile``):

* ``plain``: ``--no-consistency`` (the prediction alone);
* ``consistency``: the default for a model that records its crappifier (the prediction,
  then the data-consistency map written beside it);
* ``tta``: ``--tta --no-consistency`` (each tile in its 8 rotations/mirrors);
* ``both``: ``--tta`` (with the consistency map).

Runs are interleaved (``plain, consistency, tta, both`` per repeat) after one warm-up run
(which measures and caches the model's receptive field). Each mode's wall time for the
whole batch is listed (best and median), with its ratio to ``plain``; the engine's own
``trust_seconds`` (the time the maps take: degrading each block on the model's device
while it is in memory, and making the maps after the prediction) is summed too: the
consistency map's cost is its ``trust_seconds`` over the ``plain`` time (the wall-time
difference is listed as well, but it is within the run-to-run noise). The bars (issues
11 and 17): the consistency map costs under 10 % of the prediction, on the CPU and on a
GPU (``--device cuda``); TTA about 8x (8 forward passes; reading, writing and the pyramid
are paid once, so a little under 8x end to end).

Inputs: the first ``-n`` ISBI 2012 ssTEM sections (512² uint8) under ``--data``,
area-downsampled by the model's scale (``--images DIR`` for others). Model: ``--model`` (a
trained one for the user's figures: a trained model's receptive field, hence its overlap,
is larger), else an untrained model of the default training generator at ``--scale`` that
records the ``em`` crappifier (the cost of a forward pass and of the maps does not depend
on the weights).

Usage: python benchmarks/trust_cost.py [--data DIR] [--model PATH] [--scale 4] [-n 3]
       [--threads 2] [--repeat 3] [--device cpu] [--json PATH] [--workdir DIR]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import (
    add_data_argument,
    data_folder,
    load_line,
    machine,
    machine_line,
    now,
    write_record,
)

#: The modes and their prediction settings.
MODES = {
    "plain": {"consistency": False},
    "consistency": {"consistency": True},
    "tta": {"tta": True, "consistency": False},
    "both": {"tta": True, "consistency": True},
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, help="a trained model (default: untrained)")
    parser.add_argument("--scale", type=int, default=4, help="scale of the untrained model")
    add_data_argument(parser)
    parser.add_argument("--images", type=Path, help="folder of TIFFs (default: ISBI in --data)")
    parser.add_argument("-n", type=int, default=3, help="number of images (default 3)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per mode (default 3)")
    parser.add_argument("--device", default="cpu", help="predict --device (default cpu)")
    parser.add_argument("--tile", type=int, help="predict --tile (default: predict's)")
    parser.add_argument("--json", type=Path, help="write the record here")
    parser.add_argument("--workdir", type=Path, help="keep inputs, model and outputs here")
    return parser.parse_args(argv)


def make_model(scale: int, folder: Path) -> Path:
    """An untrained model of the default training generator that records the em crappifier."""
    from decrappify.config.model import ModelInfo
    from decrappify.config.train import TrainConfig
    from decrappify.crappify import get_preset
    from decrappify.models import build_generator, save_model

    generator = TrainConfig().generator.model_copy(update={"scale": scale})
    crappify = get_preset("em", scale=scale).model_dump(mode="json")
    info = ModelInfo(generator=generator, crappify=crappify)
    path = folder / f"untrained_x{scale}.safetensors"
    if not path.exists():
        save_model(path, build_generator(generator, seed=0).eval(), info)
    return path


def prepare_inputs(source: Path, n: int, scale: int, folder: Path) -> list[Path]:
    """The first ``n`` TIFFs of ``source``, area-downsampled by ``scale``."""
    import tifffile

    from decrappify.crappify.sampling import area_downsample

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for src in sorted(source.glob("*.tif"))[:n]:
        image = tifffile.imread(src)
        if scale > 1:
            image = np.rint(area_downsample(image.astype(np.float32), scale)).astype(image.dtype)
        target = folder / src.name
        tifffile.imwrite(target, image)
        paths.append(target)
    if not paths:
        raise SystemExit(f"{source}: no .tif images")
    return paths


def run_mode(model: Path, inputs: list[Path], out: Path, settings: dict[str, Any]) -> dict:
    """One batch: wall seconds and the engine's figures summed over the images."""
    from decrappify import api

    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    results = api.predict(model, inputs, out, settings)
    wall = time.perf_counter() - start
    failed = [r.error for r in results if not r.ok]
    if failed:
        raise SystemExit(f"prediction failed: {failed[0]}")
    info = [r.info for r in results]
    return {
        "wall_s": wall,
        "trust_s": sum(i.get("trust_seconds", 0.0) for i in info),
        "compute_s": sum(i.get("compute_seconds") or 0.0 for i in info),
        "overlap": info[0].get("overlap"),
        "trust": [i.get("trust") for i in info],
    }


def summarise(runs: dict[str, list[dict]]) -> dict[str, dict[str, float]]:
    plain = min(r["wall_s"] for r in runs["plain"])
    table = {}
    for mode, records in runs.items():
        walls = [r["wall_s"] for r in records]
        best = min(walls)
        table[mode] = {
            "best_s": best,
            "median_s": statistics.median(walls),
            "ratio_to_plain": best / plain,
            "trust_s": min(r["trust_s"] for r in records),
        }
    return table


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    import torch

    from decrappify import api

    torch.set_num_threads(args.threads)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="trust_cost_"))
    workdir.mkdir(parents=True, exist_ok=True)
    info = machine(torch=True)
    load_before = os.getloadavg()
    model = args.model or make_model(args.scale, workdir)
    scale = api.model_info(model).generator.scale
    images = args.images or data_folder(args.data, "em", "isbi2012_train")
    inputs = prepare_inputs(images, args.n, scale, workdir / "inputs")
    common: dict[str, Any] = {"device": args.device, "threads": args.threads}
    if args.tile:
        common["tile"] = args.tile
    print(f"machine: {machine_line(info)}")
    print(f"model {model} (x{scale}), {len(inputs)} inputs of {inputs[0].name}'s size, "
          f"{args.threads} threads, {args.repeat} repeats, device {args.device}")  # fmt: skip
    run_mode(model, inputs, workdir / "out", {**common, **MODES["plain"]})  # warm-up
    runs: dict[str, list[dict]] = {mode: [] for mode in MODES}
    for repeat in range(args.repeat):
        for mode, settings in MODES.items():
            record = run_mode(model, inputs, workdir / "out", {**common, **settings})
            runs[mode].append(record)
            print(f"  run {repeat + 1} {mode:12s} {record['wall_s']:7.2f} s"
                  f"  (maps {record['trust_s']:.2f} s)")  # fmt: skip
    table = summarise(runs)
    print(f"\n{'mode':12s} {'best s':>8s} {'median s':>9s} {'× plain':>8s} {'maps s':>7s}")
    for mode, row in table.items():
        print(f"{mode:12s} {row['best_s']:8.2f} {row['median_s']:9.2f} "
              f"{row['ratio_to_plain']:8.2f} {row['trust_s']:7.2f}")  # fmt: skip
    plain = table["plain"]["best_s"]
    maps = table["consistency"]["trust_s"]
    wall = table["consistency"]["ratio_to_plain"] - 1
    print(f"\nconsistency map: {maps:.2f} s = {100 * maps / plain:.1f} % of the prediction "
          f"(bar: < 10 %; wall-time difference {100 * wall:+.1f} %); "
          f"TTA: {table['tta']['ratio_to_plain']:.2f}x the prediction")  # fmt: skip
    load_after = os.getloadavg()
    print(load_line(load_before, load_after))
    if args.json:
        record = {
            "benchmark": "trust_cost",
            "date": now(),
            "machine": info,
            "load_average_before": load_before,
            "load_average_after": load_after,
            "model": str(model),
            "scale": scale,
            "inputs": [str(p) for p in inputs],
            "threads": args.threads,
            "device": args.device,
            "table": table,
            "runs": runs,
        }
        write_record(args.json, record)
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
