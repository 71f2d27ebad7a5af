"""Benchmark: end-to-end Zarr -> OME-Zarr throughput against the model's raw forward throughput.

A real decrappify generator (ResNet-18 U-Net x4, random initialisation: ``--config
default`` is the generator ``decrappify train`` builds by default, ``small`` a narrow decoder with
``nf_factor`` 0.25 and no self-attention, about 10x cheaper per pixel, which makes the
engine's own costs weigh more; or a trained model with ``--model``) super-resolves a
synthetic EM image stored as OME-Zarr (``--size`` LR pixels a side, 1024 by default: a
4096^2 output in 4 blocks) with the default settings (tile and batch of ``decrappify
predict``, automatic overlap) on ``--device`` (``cuda`` for the GPU figure of issue 17:
target >= 0.8 there). In the same run it measures:

* **raw forward**: the network alone, under ``torch.inference_mode``, on exactly the tiles
  that tiled prediction of the whole plane needs (the plan of
  ``decrappify.predict.tile_geometry.plan_tiles`` for these settings), pre-cut into batches
  already on the device, with the engine's precision and memory format (autocast and
  channels-last on CUDA), synchronised: output pixels of the image per second of forward
  passes;
* **end to end**: ``decrappify.api.iter_predict_image`` from the input OME-Zarr to the
  output OME-Zarr (percentiles, reading, normalising, tiling, forward passes, blending,
  writing the chunks and the pyramid): output pixels per second of wall time.

Both are run twice, interleaved (forward, end to end, forward, end to end), and the best of
each is kept, because the machine may be shared. The engine also times the network's
forward passes inside each end-to-end run (``stats["forward_seconds"]``): their share of the
wall time measures the engine's own overhead at the same moment, whatever the load.
Targets: end to end >= 0.9 x raw forward on the CPU, >= 0.8 x on a GPU.

Usage: python benchmarks/predict_overhead.py [--size 1024] [--config default|small]
       [--model PATH] [--device cpu|cuda] [--tile N] [--batch N] [--json PATH] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import load_line, machine, machine_line, now, write_record

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


def raw_forward_seconds(
    net: Any, lr: np.ndarray, tile: int, overlap: int, batch: int, device: str
) -> tuple[float, int]:
    """Seconds of forward passes over the whole-plane tile plan, and the number of tiles."""
    import contextlib

    import torch

    from decrappify.predict.tile_geometry import plan_tiles
    from decrappify.predict.windows import extract_window

    dev = torch.device(device)
    tiles = plan_tiles(lr.shape, tile, overlap, scale=net.scale, multiple=net.multiple)
    windows = [extract_window(lr, t.window) for t in tiles]
    batches = [
        torch.from_numpy(np.stack(windows[i : i + batch])[:, None].astype(np.float32))
        .to(dev)
        .contiguous(memory_format=torch.channels_last)
        for i in range(0, len(windows), batch)
    ]
    net.to(dev).eval().to(memory_format=torch.channels_last)
    cuda = dev.type == "cuda"
    amp = torch.autocast("cuda", dtype=torch.float16) if cuda else contextlib.nullcontext()
    with torch.inference_mode(), amp:
        net(batches[0][:1])  # warm up
        if cuda:
            torch.cuda.synchronize(dev)
        start = time.perf_counter()
        for x in batches:
            net(x)
        if cuda:
            torch.cuda.synchronize(dev)
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
    parser.add_argument("--tile", type=int, help="predict --tile (default: predict's)")
    parser.add_argument("--batch", type=int, help="predict --batch (default: predict's)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", type=Path, help="write the record here")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()

    import torch

    from decrappify.config.predict import PredictConfig

    defaults = PredictConfig()
    args.tile = args.tile or defaults.tile
    args.batch = args.batch or defaults.batch

    from decrappify import api
    from decrappify.config.model import GeneratorConfig, ModelInfo
    from decrappify.config.train import TrainConfig
    from decrappify.events import run_to_end
    from decrappify.io import write_image
    from decrappify.models import build_generator, load_model, save_model
    from decrappify.normalize import normalize, percentile_range
    from decrappify.predict.network import for_inference
    from decrappify.sample import synthetic_image

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="decrappify-overhead-"))
    workdir.mkdir(parents=True, exist_ok=True)
    info = machine(torch=True)
    load_before = os.getloadavg()
    print(f"machine: {machine_line(info)}; {torch.get_num_threads()} torch threads")
    try:
        model_path = args.model
        if model_path is None:
            cfg = GeneratorConfig(
                **{**TrainConfig().generator.model_dump(), **CONFIGS[args.config]}
            )
            model_path = workdir / f"resnet18_x4_{args.config}.safetensors"
            save_model(model_path, build_generator(cfg, seed=0), ModelInfo(generator=cfg))
        model = load_model(model_path)
        # the network as prediction runs it (normalisations baked, BatchNorm folded)
        net, scale = for_inference(model.net), model.info.generator.scale
        hr = synthetic_image("em", (args.size * scale, args.size * scale), seed=1, chunks=1024)
        lr = hr.data[scale // 2 :: scale, scale // 2 :: scale]  # an LR EM image
        source = write_image(hr.with_data(lr, yx_factor=scale), workdir / "lr.zarr")
        # the overlap the engine picks (and caches) for this model and tile
        settings = {"tile": args.tile, "batch": args.batch, "device": args.device}
        warm = run_to_end(
            api.iter_predict_image(model_path, np.zeros((64, 64), np.uint8), None, settings)
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
            seconds, n_tiles = raw_forward_seconds(
                net, x, args.tile, overlap, args.batch, args.device
            )
            forward.append(pixels / seconds)
            print(
                f"  raw forward:  {seconds:7.1f} s for {n_tiles} tiles -> "
                f"{forward[-1] / 1e6:.3f} MPix/s",
                flush=True,
            )
            out = workdir / f"out{repeat}.zarr"
            start = time.perf_counter()
            result = run_to_end(api.iter_predict_image(model_path, source, out, settings))
            seconds = time.perf_counter() - start
            end_to_end.append(pixels / seconds)
            in_forward = result.stats["forward_seconds"]  # timed on the CPU only
            if in_forward is not None:
                fractions.append(in_forward / seconds)
            share = (
                f"{in_forward:.1f} s in forward passes ({fractions[-1]:.1%} of the wall time)"
                if in_forward is not None
                else "forward passes not timed on this device"
            )
            print(
                f"  end to end:   {seconds:7.1f} s for {n_engine} tiles in "
                f"{result.stats['blocks']} blocks -> {end_to_end[-1] / 1e6:.3f} MPix/s; "
                f"in this run {share}, {result.stats['compute_seconds']:.1f} s predicting tiles",
                flush=True,
            )
            shutil.rmtree(out, ignore_errors=True)
        ratio = max(end_to_end) / max(forward)
        target = 0.9 if args.device == "cpu" else 0.8
        print(load_line(load_before, os.getloadavg()))
        print(
            f"best raw forward {max(forward) / 1e6:.3f} MPix/s, best end to end "
            f"{max(end_to_end) / 1e6:.3f} MPix/s: ratio {ratio:.3f} (target >= {target}): "
            f"{'PASS' if ratio >= target else 'FAIL'}"
        )
        if fractions:
            print(
                f"within the end-to-end runs (same moment, immune to load changes): forward "
                f"passes take {min(fractions):.1%}-{max(fractions):.1%} of the wall time"
            )
        if args.json:
            write_record(
                args.json,
                {
                    "benchmark": "predict_overhead",
                    "date": now(),
                    "machine": info,
                    "device": args.device,
                    "model": str(model_path),
                    "size": args.size,
                    "tile": args.tile,
                    "overlap": overlap,
                    "batch": args.batch,
                    "raw_forward_mpix_s": [f / 1e6 for f in forward],
                    "end_to_end_mpix_s": [e / 1e6 for e in end_to_end],
                    "ratio": ratio,
                    "forward_share": fractions,
                },
            )
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
