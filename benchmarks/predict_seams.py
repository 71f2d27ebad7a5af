"""Benchmark: tiled prediction with small tiles against whole-image prediction (seams).

Real decrappify generators (x4; the default is a ``naf`` U-Net) super-resolve a 512^2 LR
synthetic EM image into a 2048^2 output twice:

* **whole**: the network on the whole image in one forward pass (reflect-padded by
  ``--pad`` LR pixels, cropped back);
* **tiled**: ``decrappify.api.iter_predict_image`` with small tiles (``--tile``, 64 by
  default: 256 overlapping tiles) and the automatic overlap (half the tile for U-Nets).

Generators (``--configs``): ``small`` (``nf_factor`` 0.25, one convolution per decoder
block, no blur, no self-attention) and ``default`` (the generator ``decrappify train``
builds by default, ``TrainConfig().generator``),
random initialisation (``--active``: with the layers that start at zero made random, so
that every block contributes; ``--train-steps N``
trains each briefly first: L1 on x4 area-downsampled noisy synthetic EM), or a trained
model file with ``--model``.

For each it prints the PSNR of tiled against whole (normalised units, data range 1), the
largest difference and two seam statistics:

* **jump**: mean |step| of the difference map across interior tile-core edges (where a
  hard cut would put a seam) over the mean |step| elsewhere at the same sub-pixel phase;
  a seam makes it >> 1 (a hard cut, ``blend=0``, is run as a control);
* **level**: mean |difference| within 2 output pixels of a window or core edge over the
  mean elsewhere.

It saves ``docs/images/predict_seams.png`` (one row per generator: whole, tiled, the
difference map with the tile cores, the mean difference against the distance to the
nearest tile edge).

Targets: PSNR >= 50 dB, jump <= 1 and level <= 1 (no seam).

Usage: python benchmarks/predict_seams.py [--configs small default] [--active] [--train-steps N]
       [--model PATH] [--tile 64] [--size 512]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
from _common import activate

ROOT = Path(__file__).resolve().parents[1]
#: Changes to the default training generator (``TrainConfig().generator``), by name.
CONFIGS = {
    "small": {
        "self_attention": False,
        "nf_factor": 0.25,
        "blocks_per_stage": 1,
        "blur": False,
        "residual": False,
    },
    # the generator `decrappify train` builds by default (TrainConfig.generator)
    "default": {},
}


def train_briefly(net, steps: int, scale: int, seed: int = 0):
    """L1 steps on synthetic EM: x``scale`` area downsampling plus Gaussian noise."""
    import torch
    import torch.nn.functional as F

    from decrappify.normalize import normalize, percentile_range
    from decrappify.sample import synthetic_image

    hr = np.asarray(synthetic_image("em", (1024, 1024), seed=seed + 100).data)
    hr = normalize(hr, *percentile_range(hr))
    rng = np.random.default_rng(seed)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    net.train()
    patch = 128
    start = time.perf_counter()
    for step in range(steps):
        corners = rng.integers(0, hr.shape[0] - patch, (8, 2))
        target = torch.from_numpy(np.stack([hr[y : y + patch, x : x + patch] for y, x in corners]))
        target = target[:, None]
        lr = F.avg_pool2d(target, scale)
        lr = lr + 0.05 * torch.randn(lr.shape, generator=torch.Generator().manual_seed(step))
        loss = F.l1_loss(net(lr), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 50 == 0 or step == steps - 1:
            print(f"  step {step}: L1 {loss.item():.4f} ({time.perf_counter() - start:.0f} s)")
    return net.eval()


def whole_prediction(net, x: np.ndarray, pad: int) -> np.ndarray:
    """The network on the whole reflect-padded image in one pass."""
    import torch

    from decrappify.predict.tile_geometry import tile_quantum

    quantum = tile_quantum(net.scale, getattr(net, "multiple", 32))
    h, w = x.shape
    extra_h, extra_w = (-(h + 2 * pad)) % quantum, (-(w + 2 * pad)) % quantum
    padded = np.pad(x, ((pad, pad + extra_h), (pad, pad + extra_w)), mode="reflect")
    with torch.inference_mode():
        out = net(torch.from_numpy(padded[None, None].astype(np.float32)))[0, 0].numpy()
    s = net.scale
    return out[pad * s : (pad + h) * s, pad * s : (pad + w) * s]


def edge_distance(shape, plan, scale: int) -> np.ndarray:
    """HR distance of every output pixel to the nearest interior window or core edge."""
    distances = []
    for axis in (0, 1):
        edges = sorted(
            {
                edge * scale
                for t in plan
                for edge in (*t.window[axis], *t.core[axis])
                if 0 < edge < shape[axis]
            }
        )
        coords = np.arange(shape[axis] * scale) + 0.5
        distances.append(np.min(np.abs(coords[:, None] - np.array(edges)[None, :]), axis=1))
    return np.minimum(distances[0][:, None], distances[1][None, :])


def core_edge_jump(diff: np.ndarray, plan, scale: int) -> float:
    """Mean |step| of the difference across interior core edges over the mean elsewhere.

    The reference steps are those at the same sub-pixel phase (between HR pixels of
    different LR pixels): an upsampling network's output has a ``scale``-periodic texture.
    """
    across, other = [], []
    for axis in (0, 1):
        steps = np.moveaxis(np.abs(np.diff(diff, axis=axis)), axis, 0)
        phase = np.arange(steps.shape[0]) % scale == scale - 1
        edges = np.zeros(steps.shape[0], dtype=bool)
        for t in plan:
            for edge in t.core[axis]:
                if 0 < edge * scale < diff.shape[axis]:
                    edges[edge * scale - 1] = True
        across.append(steps[edges].ravel())
        other.append(steps[phase & ~edges].ravel())
    return float(np.concatenate(across).mean() / np.concatenate(other).mean())


def tiled_prediction(net, lr, tile, overlap, blend=0.5):
    from decrappify import api
    from decrappify.events import run_to_end

    result = run_to_end(
        api.iter_predict_image(
            net,
            lr,
            None,
            {"tile": tile, "overlap": overlap, "blend": blend, "device": "cpu", "dtype": "float32"},
        )
    )
    lo, hi = result.stats["lo"], result.stats["hi"]
    return (np.asarray(result.image.data) - lo) / (hi - lo), result.stats


def evaluate(net, label, lr, x, args):
    """Figures and picture panels of one generator."""
    from decrappify.predict.tile_geometry import plan_tiles

    scale = net.scale
    start = time.perf_counter()
    whole = whole_prediction(net, x, args.pad)
    print(
        f"[{label}] whole image: one pass on {whole.shape} in {time.perf_counter() - start:.0f} s"
    )
    start = time.perf_counter()
    overlap = args.overlap if args.overlap == "auto" else int(args.overlap)
    tiled, stats = tiled_prediction(net, lr, args.tile, overlap)
    overlap = stats["overlap"]
    plan = plan_tiles(x.shape, args.tile, overlap, scale=scale)
    print(
        f"[{label}] tiled: tile {args.tile}, overlap {overlap} (receptive-field radius "
        f"{stats['radius']}), {len(plan)} tiles, in {time.perf_counter() - start:.0f} s"
    )
    diff = tiled - whole
    psnr = 10 * np.log10(1.0 / np.mean(diff**2))
    distance = edge_distance(x.shape, plan, scale)
    level = np.abs(diff)[distance <= 2].mean() / np.abs(diff)[distance > 2].mean()
    jump = core_edge_jump(diff, plan, scale)
    cut, _ = tiled_prediction(net, lr, args.tile, overlap, blend=0.0)
    cut_plan = plan_tiles(x.shape, args.tile, overlap, scale=scale, blend=0.0)
    cut_jump = core_edge_jump(cut - whole, cut_plan, scale)
    cut_psnr = 10 * np.log10(1.0 / np.mean((cut - whole) ** 2))
    print(
        f"[{label}] PSNR tiled vs whole {psnr:.1f} dB (target >= 50), max |diff| "
        f"{np.abs(diff).max():.2e}; jump {jump:.2f}, level {level:.2f} (no seam: <= 1); "
        f"hard-cut control: PSNR {cut_psnr:.1f} dB, jump {cut_jump:.2f}"
    )
    return {
        "label": label,
        "whole": whole,
        "tiled": tiled,
        "diff": diff,
        "plan": plan,
        "distance": distance,
        "psnr": psnr,
        "jump": jump,
        "level": level,
        "overlap": overlap,
    }


def figure(rows, scale, tile, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(rows), 4, figsize=(20, 5.2 * len(rows)), squeeze=False)
    crop = (slice(0, 512), slice(0, 512))
    for ax, row in zip(axes, rows, strict=True):
        diff = np.abs(row["diff"])
        ax[0].imshow(row["whole"][crop], cmap="gray", vmin=0, vmax=1)
        ax[0].set_title(f"{row['label']}\nwhole image, one pass (512² crop)")
        ax[1].imshow(row["tiled"][crop], cmap="gray", vmin=0, vmax=1)
        ax[1].set_title(f"tiled: tile {tile}, overlap {row['overlap']} (crop)")
        shown = ax[2].imshow(diff, cmap="magma", vmin=0, vmax=np.percentile(diff, 99.9))
        ax[2].set_title(f"|tiled − whole|: PSNR {row['psnr']:.1f} dB (grey: tile cores)")
        for t in row["plan"]:
            (y0, y1), (x0, x1) = t.core
            ax[2].add_patch(
                plt.Rectangle(
                    (x0 * scale - 0.5, y0 * scale - 0.5),
                    (x1 - x0) * scale,
                    (y1 - y0) * scale,
                    fill=False,
                    lw=0.25,
                    ec="0.7",
                )
            )
        fig.colorbar(shown, ax=ax[2], fraction=0.046)
        bins = np.arange(0, int(row["distance"].max()) + 2, 2)
        which = np.digitize(row["distance"].ravel(), bins) - 1
        profile = np.bincount(which, weights=diff.ravel()) / np.maximum(np.bincount(which), 1)
        ax[3].plot(bins[: len(profile)] + 1, profile, marker="o", ms=3)
        ax[3].set_ylim(0, None)
        ax[3].set_xlabel("distance to the nearest tile edge (output pixels)")
        ax[3].set_ylabel("mean |tiled − whole|")
        ax[3].set_title(f"no seam: jump {row['jump']:.2f}, level {row['level']:.2f}")
        for a in ax[:3]:
            a.set_xticks([])
            a.set_yticks([])
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    print(f"figure: {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--configs",
        nargs="+",
        default=None,
        choices=CONFIGS,
        help="random-init generators (default: small default; none with --model)",
    )
    parser.add_argument("--model", type=Path, default=None, help="a trained model instead")
    parser.add_argument("--train-steps", type=int, default=0)
    parser.add_argument(
        "--active",
        action="store_true",
        help="random-init generators with their zero-initialised layers made random too",
    )
    parser.add_argument("--size", type=int, default=512, help="LR side")
    parser.add_argument("--tile", type=int, default=64)
    parser.add_argument("--overlap", default="auto")
    parser.add_argument("--pad", type=int, default=32, help="whole-image reflect padding")
    parser.add_argument("--figure", type=Path, default=ROOT / "docs/images/predict_seams.png")
    args = parser.parse_args()

    import torch

    from decrappify.config.model import GeneratorConfig
    from decrappify.config.train import TrainConfig
    from decrappify.models import build_generator, load_model
    from decrappify.normalize import normalize, percentile_range
    from decrappify.sample import synthetic_image

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load {os.getloadavg()}")
    nets = []
    if args.model is not None:
        label = f"trained model {args.model.parent.name}/{args.model.name}"
        nets.append((load_model(args.model).net.eval(), label))
    configs = args.configs if args.configs is not None else ([] if args.model else list(CONFIGS))
    for name in configs:
        cfg = GeneratorConfig(**{**TrainConfig().generator.model_dump(), **CONFIGS[name]})
        net = build_generator(cfg, seed=0)
        label = f"{cfg.short_name} x{cfg.scale} '{name}', random init"
        if args.active:
            activate(net)
            label += ", every block active"
        if args.train_steps:
            print(f"training '{name}' for {args.train_steps} steps ...")
            net = train_briefly(net, args.train_steps, 4)
            label = f"{cfg.short_name} x{cfg.scale} '{name}', {args.train_steps} training steps"
        nets.append((net.eval(), label))
    scale = nets[0][0].scale
    hr = synthetic_image("em", (args.size * scale, args.size * scale), seed=3)
    lr = np.asarray(hr.data)[scale // 2 :: scale, scale // 2 :: scale]
    x = normalize(lr, *percentile_range(lr))
    print(f"image: {lr.shape} LR -> {(args.size * scale,) * 2} output")
    rows = [evaluate(net, label, lr, x, args) for net, label in nets]
    figure(rows, scale, args.tile, args.figure)
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
