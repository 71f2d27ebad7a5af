"""Check: the out-of-memory back-off on a real GPU finishes with the output of a run that fits.

On CUDA, the process's memory is capped with ``torch.cuda.set_per_process_memory_fraction``
so that the first batch of a prediction cannot fit, and the prediction must step down
(:mod:`decrappify.predict.oom`: half the batch, then half the tile) and go on. Two cases:

* **batch**: the cap lets one tile through but not ``--batch`` of them: the back-off only
  halves the batch, so the output must equal an uncapped run's (same tiles);
* **tile**: the cap lets no tile of ``--tile`` through: the back-off halves the tile too;
  the output is compared with an uncapped run at the tile the back-off ended at.

The memory one forward pass needs is measured first (``torch.cuda.max_memory_allocated``
for batch 1 and ``--batch``), and the caps are set between them. Each case prints the
steps the engine took (``stats["oom_retries"]``), the seconds, and how far the output is
from the reference (identical, or the largest difference). CUDA runs are made
deterministic (``cudnn.deterministic``, no autotuning) so that equal work gives equal
bytes. ``--device cpu`` runs the same code without a cap (a smoke run: no back-off).

Usage: python benchmarks/predict_oom.py [--device cuda] [--size 2048] [--tile 512]
       [--batch 8] [--model PATH] [--json PATH]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import machine, machine_line, now, write_record


def peak_bytes(net: Any, side: int, batch: int, device: Any) -> int:
    """Peak CUDA memory of one forward pass of ``batch`` tiles of ``side`` LR pixels."""
    import torch

    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    x = torch.rand(batch, net.n_frames, side, side, device=device)
    x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16):
        net(x)
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device) - base
    del x
    torch.cuda.empty_cache()
    return int(peak)


def predict(model: Any, image: np.ndarray, settings: dict[str, Any]) -> tuple[np.ndarray, dict]:
    from decrappify import api
    from decrappify.events import run_to_end

    start = time.perf_counter()
    result = run_to_end(api.iter_predict_image(model, image, None, settings))
    stats = dict(result.stats)
    stats["wall_s"] = time.perf_counter() - start
    return np.asarray(result.image.data), stats


def compare(got: np.ndarray, reference: np.ndarray) -> dict[str, Any]:
    diff = np.abs(got.astype(np.float64) - reference.astype(np.float64))
    return {"identical": bool(np.array_equal(got, reference)), "max_abs_diff": float(diff.max())}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--size", type=int, default=2048, help="LR side of the image")
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--model", type=Path, help="a model file (default: untrained default)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    import torch

    from decrappify.models import load_model
    from decrappify.sample import synthetic_image

    info = machine(torch=True)
    print(machine_line(info), f"\nload average {os.getloadavg()}")
    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA device here (use --device cpu for a smoke run)")
    if cuda:
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    model = args.model or default_model(Path(os.environ.get("TMPDIR", "/tmp")))
    hr = synthetic_image("em", (args.size * 4, args.size * 4), seed=1)
    image = np.asarray(hr.data)[2::4, 2::4]  # an LR EM image
    settings = {"device": args.device, "tile": args.tile, "batch": args.batch, "dtype": "float32"}
    record: dict[str, Any] = {"benchmark": "predict_oom", "date": now(), "machine": info}
    reference, stats = predict(str(model), image, settings)
    print(
        f"uncapped: tile {stats['tile']}, overlap {stats['overlap']}, batch {args.batch}: "
        f"{stats['wall_s']:.1f} s, {stats['blocks']} blocks, retries {stats['oom_retries']}"
    )
    record["uncapped"] = stats
    if cuda:
        device = torch.device(args.device)
        net = load_model(model).net.to(device).eval()
        window = stats["tile"] if isinstance(stats["tile"], int) else max(stats["tile"])
        one = peak_bytes(net, window, 1, device)
        full = peak_bytes(net, window, args.batch, device)
        del net
        torch.cuda.empty_cache()
        total = torch.cuda.get_device_properties(device).total_memory
        print(f"one forward pass of tile {window}: batch 1 {one / 2**30:.2f} GiB, batch "
              f"{args.batch} {full / 2**30:.2f} GiB of {total / 2**30:.0f} GiB")  # fmt: skip
        cases = {"batch": (one * 1.5) / total, "tile": (one * 0.6) / total}
        record["peak_bytes"] = {"batch_1": one, f"batch_{args.batch}": full, "total": total}
        for name, fraction in cases.items():
            torch.cuda.empty_cache()
            torch.cuda.set_per_process_memory_fraction(min(1.0, fraction), device)
            try:
                got, capped = predict(str(model), image, settings)
            finally:
                torch.cuda.set_per_process_memory_fraction(1.0, device)
            retries = capped["oom_retries"] or []
            final = retries[-1] if retries else {"tile": [args.tile] * 2, "batch": args.batch}
            if final["tile"] != [window, window]:  # the reference at the tile it ended at
                ref, _ = predict(str(model), image, {**settings, "tile": final["tile"][0],
                                                      "batch": final["batch"]})  # fmt: skip
            else:
                ref = reference
            result = {"fraction": fraction, "retries": retries, "wall_s": capped["wall_s"],
                      **compare(got, ref)}  # fmt: skip
            record[name] = result
            print(f"capped ({name}, {fraction:.3f} of the GPU): {len(retries)} step(s) down to "
                  f"{final}; {capped['wall_s']:.1f} s; identical: {result['identical']} (max "
                  f"|diff| {result['max_abs_diff']:.2e})")  # fmt: skip
    if args.json:
        write_record(args.json, record)
    return 0


def default_model(folder: Path) -> Path:
    """An untrained model of the default training generator (the cost of a pass is the same)."""
    from decrappify.config.model import ModelInfo
    from decrappify.config.train import TrainConfig
    from decrappify.models import build_generator, save_model

    cfg = TrainConfig().generator
    path = folder / "decrappify-oom-default.safetensors"
    if not path.exists():
        save_model(path, build_generator(cfg, seed=0), ModelInfo(generator=cfg))
    return path


if __name__ == "__main__":
    sys.exit(main())
