"""Benchmark: super-resolve a generated 16k x 16k uint16 OME-Zarr x4 into a 64k x 64k OME-Zarr.

1. ``decrappify sample --kind fluorescence --size 16384 --out in.zarr`` writes the input
   chunk by chunk (uint16, 1024^2 chunks).
2. A child process super-resolves it x4 with a tiny convolutional model (bilinear
   upsampling and two 3x3 convolutions; a real U-Net would take days on a CPU) through
   ``decrappify.api.iter_predict_image`` into ``out.zarr`` (65536 x 65536 uint16, 1024^2
   chunks, a 9-level pyramid), and prints its wall time, its peak resident memory
   (``VmHWM``) and its statistics.
3. The output is checked: shape, dtype, pyramid, and a few random blocks against the same
   regions predicted directly in memory.

Target: peak RSS under 2 GiB. Prints the machine (CPU, cores, memory) and its load.

Usage: python benchmarks/predict_memory.py [--size 16384] [--workdir DIR] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def tiny_model(scale: int = 4):
    """Bilinear x``scale`` upsampling corrected by two 3x3 convolutions (4 channels)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class TinySR(nn.Module):
        multiple = 32

        def __init__(self) -> None:
            super().__init__()
            self.scale, self.n_frames = scale, 1
            self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
            self.conv2 = nn.Conv2d(4, 1, 3, padding=1)
            generator = torch.Generator().manual_seed(0)
            with torch.no_grad():
                for conv in (self.conv1, self.conv2):
                    conv.weight.copy_(0.1 * torch.randn(conv.weight.shape, generator=generator))
                    conv.bias.zero_()

        def forward(self, x):
            up = F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False)
            return up + self.conv2(F.relu(self.conv1(up)))

    return TinySR().eval()


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{cpu}, {len(os.sched_getaffinity(0))} cores, {mem:.0f} GiB RAM, {platform.system()}"


def peak_rss_gib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    return float("nan")


def child(source: Path, out: Path) -> None:
    """Run the prediction and print one JSON line of figures."""
    from decrappify import api
    from decrappify.events import Progress

    start = time.perf_counter()
    events = api.iter_predict_image(
        tiny_model(), source, out, {"tile": 128, "batch": 8, "device": "cpu"}
    )
    last = time.perf_counter()
    while True:
        try:
            event: Progress = next(events)
        except StopIteration as stop:
            result = stop.value
            break
        now = time.perf_counter()
        if now - last > 30 or event.step == event.total:
            last = now
            print(
                f"  [{now - start:6.0f} s] {event.message} {event.info.get('rate', '')} "
                f"(peak RSS {peak_rss_gib():.2f} GiB)",
                flush=True,
            )
    stats = {k: v for k, v in result.stats.items() if isinstance(v, int | float | str | tuple)}
    stats.update(seconds_total=time.perf_counter() - start, peak_rss_gib=peak_rss_gib())
    print("RESULT " + json.dumps(stats), flush=True)


def check(source: Path, out: Path, n_blocks: int = 3) -> None:
    """Compare random stored blocks with the same regions predicted in memory."""
    import zarr

    from decrappify import api
    from decrappify.io import read_image, read_ome_zarr_metadata

    image = read_image(source)
    result = read_image(out)
    meta = read_ome_zarr_metadata(out)
    print(
        f"output: {result.shape} {result.dtype}, {len(meta.paths)} levels, chunks "
        f"{zarr.open_array(out / '0', mode='r').chunks}, pixel size {result.pixel_size}"
    )
    rng = np.random.default_rng(0)
    lo_hi = None
    for _ in range(n_blocks):
        y, x = (int(v) for v in rng.integers(0, image.shape[0] - 256, 2))
        preview = api.predict_region(
            tiny_model(),
            image,
            ((y, y + 256), (x, x + 256)),
            {"tile": 128, "device": "cpu"},
            lo_hi=lo_hi,
        )
        stored = np.asarray(result.data[4 * y : 4 * y + 1024, 4 * x : 4 * x + 1024])
        diff = np.abs(stored.astype(np.int64) - preview.data.astype(np.int64))
        print(
            f"  region ({y}, {x}) of the input: max |stored - direct| = {diff.max()} "
            f"(uint16 levels), {np.mean(diff > 0):.2e} of the pixels differ"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=16384)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the input and output")
    parser.add_argument("--child", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="decrappify-predict-"))
    workdir.mkdir(parents=True, exist_ok=True)
    source, out = workdir / "in.zarr", workdir / "out.zarr"
    exe = str(Path(sys.executable).with_name("decrappify"))
    print(f"machine: {machine()}")
    print(f"load average before: {os.getloadavg()}")
    try:
        if not source.exists():
            print(f"generating {args.size}^2 uint16 input in {workdir} ...", flush=True)
            start = time.perf_counter()
            subprocess.run(
                [
                    exe,
                    "sample",
                    "--kind",
                    "fluorescence",
                    "--size",
                    str(args.size),
                    "--out",
                    str(source),
                    "--quiet",
                ],
                check=True,
            )
            print(f"  generated in {time.perf_counter() - start:.0f} s")
        shutil.rmtree(out, ignore_errors=True)
        print(f"predicting x4 into {out} ...", flush=True)
        proc = subprocess.run(
            [sys.executable, __file__, "--child", str(source), str(out)],
            check=True,
            capture_output=False,
            stdout=subprocess.PIPE,
            text=True,
        )
        lines = proc.stdout.splitlines()
        print("\n".join(line for line in lines if not line.startswith("RESULT ")))
        stats = json.loads(next(line for line in lines if line.startswith("RESULT "))[7:])
        print(f"load average after: {os.getloadavg()}")
        size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) / 2**30
        print(
            f"input {args.size}^2 uint16 -> output {stats['output_shape']} {stats['dtype']}, "
            f"{size:.2f} GiB on disk"
        )
        print(
            f"wall time {stats['seconds_total']:.0f} s, blocks {stats['blocks']}, tile "
            f"{stats['tile']}, overlap {stats['overlap']}, level-0 rate "
            f"{stats['pixels_per_s'] / 1e6:.1f} MPix/s output"
        )
        verdict = "PASS" if stats["peak_rss_gib"] < 2 else "FAIL"
        print(f"peak RSS {stats['peak_rss_gib']:.2f} GiB (target < 2 GiB): {verdict}")
        check(source, out)
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
