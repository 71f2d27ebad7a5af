"""Benchmark: end-to-end Zarr -> OME-Zarr throughput against the model's raw forward throughput.

A real decrappify generator (ResNet-18 U-Net x4, random initialisation: ``--config
default`` is the generator ``decrappify train`` builds by default, ``small`` a narrow decoder with
``nf_factor`` 0.25 and no self-attention, about 10x cheaper per pixel, which makes the
engine's own costs weigh more; or a trained model with ``--model``) super-resolves a
synthetic EM image stored as OME-Zarr (``--size`` LR pixels a side, 1024 by default: a
4096^2 output in 4 blocks) with the default settings (tile 128, automatic overlap,
batch 8). In the same run it measures:

* **raw forward**: the network alone, under ``torch.inference_mode``, on exactly the tiles
  that tiled prediction of the whole plane needs (the plan of
  ``decrappify.predict.tile_geometry.plan_tiles`` for these settings), pre-cut into batches in
  memory: output pixels of the image per second of forward passes;
* **end to end**: ``decrappify.api.iter_predict_image`` from the input OME-Zarr to the
  output OME-Zarr (percentiles, reading, normalising, tiling, forward passes, blending,
  writing the chunks and the pyramid): output pixels per second of wall time.

Both are run twice, interleaved (forward, end to end, forward, end to end), and the best of
each is kept, because the machine may be shared. The engine also times the network's
forward passes inside each end-to-end run (``stats["forward_seconds"]``): their share of the
wall time measures the engine's own overhead at the same moment, whatever the load.
Target: end to end >= 0.9 x raw forward.

Usage: python benchmarks/predict_overhead.py [--size 1024] [--config default|small]
       [--model PATH] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

#: Changes to the default training generator (``TrainConfig().generator``), by name.
CONFIGS = {
    # the generator `decrappify train` builds by default (TrainConfig.generator)
    "default": {},
    "small": {
        "self_attention": False,
        "nf_factor": 0.25,
        "blocks_per_stage": 1,
        "blur": False,
        "residual": False,
    },
}


def machine() -> str:
    cpu = platform.machine()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{cpu}, {len(os.sched_getaffinity(0))} cores, {mem:.0f} GiB RAM"


def raw_forward_seconds(
    net, lr: np.ndarray, tile: int, overlap: int, batch: int
) -> tuple[float, int]:
    """Seconds of forward passes over the whole-plane tile plan, and the number of tiles."""
    import torch

    from decrappify.predict.tile_geometry import extract_window, plan_tiles

    tiles = plan_tiles(lr.shape, tile, overlap, scale=net.scale)
    windows = [extract_window(lr, t.window) for t in tiles]
    batches = [
        torch.from_numpy(np.stack(windows[i : i + batch])[:, None].astype(np.float32))
        for i in range(0, len(windows), batch)
    ]
    net.eval()
    with torch.inference_mode():
        net(batches[0][:1])  # warm up
        start = time.perf_counter()
        for x in batches:
            net(x)
        return time.perf_counter() - start, len(tiles)


def engine_tiles(shape: tuple[int, int], scale: int, tile: int, overlap: int) -> int:
    """Tiles the engine computes: the sum over its blocks of each block's plan."""
    from decrappify.predict.block_geometry import BlockGrid, input_region_for_output
    from decrappify.predict.tile_geometry import plan_tiles

    grid = BlockGrid.plan(shape, scale, chunk=1024, block=2048)
    count = 0
    for index in grid.indices():
        read, region = input_region_for_output(
            grid.bounds(index), scale=scale, halo=overlap, lr_shape=shape
        )
        size = (read[0][1] - read[0][0], read[1][1] - read[1][0])
        count += len(plan_tiles(size, tile, overlap, scale=scale, region=region))
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--config", choices=CONFIGS, default="default")
    parser.add_argument("--tile", type=int, default=128)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()

    import torch

    from decrappify import api
    from decrappify.config.model import GeneratorConfig, ModelInfo
    from decrappify.config.train import TrainConfig
    from decrappify.events import run_to_end
    from decrappify.io import write_image
    from decrappify.models import build_generator, load_model, save_model
    from decrappify.normalize import normalize, percentile_range
    from decrappify.sample import synthetic_image

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="decrappify-overhead-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"machine: {machine()}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"load average before: {os.getloadavg()}")
    try:
        model_path = args.model
        if model_path is None:
            cfg = GeneratorConfig(
                **{**TrainConfig().generator.model_dump(), **CONFIGS[args.config]}
            )
            model_path = workdir / f"resnet18_x4_{args.config}.safetensors"
            save_model(model_path, build_generator(cfg, seed=0), ModelInfo(generator=cfg))
        model = load_model(model_path)
        net, scale = model.net, model.info.generator.scale
        hr = synthetic_image("em", (args.size * scale, args.size * scale), seed=1, chunks=1024)
        lr = hr.data[scale // 2 :: scale, scale // 2 :: scale]  # an LR EM image
        source = write_image(hr.with_data(lr, yx_factor=scale), workdir / "lr.zarr")
        # the overlap the engine picks (and caches) for this model and tile
        warm = run_to_end(
            api.iter_predict_image(model, np.zeros((64, 64), np.uint8), None, {"tile": args.tile})
        )
        overlap = warm.stats["overlap"]
        image = np.asarray(lr.compute())
        x = normalize(image, *percentile_range(image))
        pixels = (args.size * scale) ** 2
        n_engine = engine_tiles(image.shape, scale, args.tile, overlap)
        millions = sum(p.numel() for p in net.parameters()) / 1e6
        print(
            f"model {model_path.name}: x{scale}, {millions:.1f} M "
            f"parameters; input {image.shape} uint8 -> output {args.size * scale}^2; tile "
            f"{args.tile}, overlap {overlap} (radius {warm.stats['radius']}), batch {args.batch}"
        )
        forward, end_to_end, fractions = [], [], []
        for repeat in range(args.repeats):
            seconds, n_tiles = raw_forward_seconds(net, x, args.tile, overlap, args.batch)
            forward.append(pixels / seconds)
            print(
                f"  raw forward:  {seconds:7.1f} s for {n_tiles} tiles -> "
                f"{forward[-1] / 1e6:.3f} MPix/s",
                flush=True,
            )
            out = workdir / f"out{repeat}.zarr"
            start = time.perf_counter()
            result = run_to_end(
                api.iter_predict_image(
                    model, source, out, {"tile": args.tile, "batch": args.batch, "device": "cpu"}
                )
            )
            seconds = time.perf_counter() - start
            end_to_end.append(pixels / seconds)
            in_forward = result.stats["forward_seconds"]
            fractions.append(in_forward / seconds)
            print(
                f"  end to end:   {seconds:7.1f} s for {n_engine} tiles in "
                f"{result.stats['blocks']} blocks -> {end_to_end[-1] / 1e6:.3f} MPix/s; "
                f"in this run {in_forward:.1f} s in forward passes ({fractions[-1]:.1%} of the "
                f"wall time), {result.stats['compute_seconds']:.1f} s predicting tiles",
                flush=True,
            )
            shutil.rmtree(out, ignore_errors=True)
        ratio = max(end_to_end) / max(forward)
        print(f"load average after: {os.getloadavg()}")
        print(
            f"best raw forward {max(forward) / 1e6:.3f} MPix/s, best end to end "
            f"{max(end_to_end) / 1e6:.3f} MPix/s: ratio {ratio:.3f} (target >= 0.9): "
            f"{'PASS' if ratio >= 0.9 else 'FAIL'}"
        )
        print(
            f"within the end-to-end runs (same moment, immune to load changes): forward "
            f"passes take {min(fractions):.1%}-{max(fractions):.1%} of the wall time "
            f"(target >= 90%): {'PASS' if min(fractions) >= 0.9 else 'FAIL'}"
        )
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
