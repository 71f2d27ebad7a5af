"""Train the DEFAULT NoGAN recipe on real data under a time budget (CPU or GPU); score it.

Usage::

    python benchmarks/train_benchmark.py --data em --minutes 20
    python benchmarks/train_benchmark.py --data fluo --minutes 20
    python benchmarks/train_benchmark.py --data em --minutes 3 --device cuda   # on a GPU
    python benchmarks/train_benchmark.py --data em --minutes 5 --set gan.max_steps=0 --tag quick

What it does:

1. splits the images *by image*: ``em`` = the 30 ISBI 2012 ssTEM training sections
   (512² uint8): the first 24 for training, the last 6 held back for testing;
   ``fluo`` = the 20 W2S widefield averages (512² uint8): 16 / 4. Training also holds
   out a few of its own images as the validation crops it uses for checkpoints and early
   stopping (``--val-images``), so the test images are never seen, not even for model
   selection;
2. trains with the default :class:`~decrappify.config.train.TrainConfig` (``em`` /
   ``fluorescence`` crappify preset, 4x) and the wall-clock budget (``--set`` overrides
   any setting, for tuning);
3. crappifies every held-back image whole with a fixed seed (the LR image as a
   microscope would store it: same dtype), predicts it whole (the LR normalised with its
   own 0.1/99.9 percentiles, as at inference) and scores bicubic and model with the
   normalised metrics of :mod:`decrappify.metrics` (percentile-normalised ground truth,
   prediction affinely matched, as CSBDeep);
4. prints the table and writes ``RUN/benchmark.json``; with ``--figures`` also
   ``docs/images/train_<data>_curves.png`` and ``docs/images/train_<data>_comparison.png``.

The machine load (``os.getloadavg``) before and after is recorded: the numbers are
honest only if nothing else ran on the cores.
"""

from __future__ import annotations

import os

# Idle OpenMP threads sleep instead of spinning: on a machine shared with other jobs,
# spinning threads of an oversubscribed CPU slow training several-fold. Set before torch
# is imported (it has no effect afterwards).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import resource
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

DATA_ROOT = Path("/work/shared/data")
DATA = {
    "em": {
        "folder": "em/isbi2012_train",
        "n_test": 6,
        "n_val": 3,
        "preset": "em",
    },
    "fluo": {
        "folder": "fluo/w2s_avg400",
        "n_test": 4,
        "n_val": 2,
        "preset": "fluorescence",
    },
}
REPO = Path(__file__).resolve().parents[1]
#: Seed of the crappification of the held-back test images.
TEST_SEED = 2024


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", choices=sorted(DATA), default="em")
    parser.add_argument(
        "--data-root", type=Path, default=DATA_ROOT, help=f"folder of em/, fluo/ ({DATA_ROOT})"
    )
    parser.add_argument("--minutes", type=float, default=20.0, help="wall-clock time budget")
    parser.add_argument("--device", default="cpu", help="train device: cpu (default), cuda")
    parser.add_argument("--out", type=Path, default=None, help="run folder (default /tmp/...)")
    parser.add_argument("--tag", default="default", help="name of this run (tuning log)")
    parser.add_argument("--set", action="append", default=[], help="override key=value")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--val-images", type=int, default=None, help="validation images")
    parser.add_argument("--figures", action="store_true", help="write docs/images/train_*")
    parser.add_argument("--every", type=int, default=50, help="print every N steps")
    parser.add_argument(
        "--steps", type=int, default=None, help="tuning: fixed pretraining steps, no budget"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads (all cores)")
    parser.add_argument(
        "--snapshots",
        default="",
        help="minutes (e.g. 10,20,45,90) at which the generator of the latest checkpoint is "
        "kept and scored on the test images at the end: the gain-vs-time curve of one run",
    )
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="what --snapshots counts: wall-clock minutes, or the CPU minutes of this "
        "process (all threads; with --threads 1 on a shared machine this does not depend "
        "on the other jobs)",
    )
    return parser.parse_args(argv)


def split_files(data: str, root: Path = DATA_ROOT) -> tuple[list[Path], list[Path]]:
    spec = DATA[data]
    folder = root / spec["folder"]
    files = sorted(folder.glob("*.tif"))
    if len(files) <= spec["n_test"]:
        sys.exit(f"{folder}: expected more than {spec['n_test']} TIFF files")
    return files[: -spec["n_test"]], files[-spec["n_test"] :]


def build_config(args: argparse.Namespace) -> Any:
    """The default recipe for the data's crappify preset, as ``decrappify train --preset``."""
    from decrappify.api import train_config

    spec = DATA[args.data]
    overrides: dict[str, Any] = {
        "time_budget": args.minutes * 60.0,
        "seed": args.seed,
        "device": args.device,
        "data.validation.count": args.val_images or spec["n_val"],
    }
    if args.steps is not None:
        overrides.update({"time_budget": None, "pretrain_generator.steps": args.steps})
    if args.threads is not None:
        overrides["num_threads"] = args.threads
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key.strip()] = yaml.safe_load(value)
    return train_config(preset=spec["preset"], overrides=overrides)


def train(args: argparse.Namespace, config: Any, files: list[Path], run_dir: Path) -> Any:
    from decrappify.train import iter_train

    start, cpu_start = time.perf_counter(), cpu_seconds()
    gen = iter_train(config, [str(f) for f in files], run_dir)
    last_phase = None
    marks = sorted(float(m) for m in args.snapshots.split(",") if m.strip())
    while True:
        try:
            event = next(gen)
        except StopIteration as stop:
            return stop.value
        if args.clock == "cpu":
            minutes = (cpu_seconds() - cpu_start) / 60.0
        else:
            minutes = (time.perf_counter() - start) / 60.0
        while marks and minutes >= marks[0]:
            snapshot(config, run_dir, marks.pop(0))
        show = (
            event.phase != last_phase
            or event.metrics
            or (event.step % args.every == 0)
            or event.step == event.total
        )
        if show:
            losses = " ".join(f"{k} {v:.4f}" for k, v in event.losses.items())
            metrics = " ".join(f"{k} {v:.3f}" for k, v in event.metrics.items())
            print(
                f"[{time.perf_counter() - start:7.1f}s cpu {cpu_seconds():7.1f}s] "
                f"{event.phase:22s} {event.step}/{event.total} {losses} {metrics} "
                f"{event.message}",
                flush=True,
            )
        last_phase = event.phase


def snapshot(config: Any, run_dir: Path, minute: float) -> None:
    """Keep the generator of the latest checkpoint as a model ``RUN/snapshots/<minute>m``."""
    from decrappify.config.model import ModelInfo
    from decrappify.models import build_generator, save_model
    from decrappify.train.state import read_checkpoint, unprefixed

    try:
        state, tensors = read_checkpoint(run_dir / "checkpoints")
    except Exception as err:  # no checkpoint yet
        print(f"snapshot at {minute:g} min skipped: {err}", flush=True)
        return
    net = build_generator(config.generator)
    net.load_state_dict(unprefixed(tensors, "generator"))
    info = ModelInfo(
        generator=config.generator,
        normalization=config.data.resolve_normalization(config.resolved_crappify().normalization),
        training={"snapshot_minutes": minute, "phase": state.phase, "step": state.step},
    )
    save_model(run_dir / "snapshots" / f"{minute:g}m", net.eval(), info)
    print(f"snapshot at {minute:g} min: {state.phase} step {state.step}", flush=True)


def device_name(device: str) -> str:
    """What trains: the GPU's name, or the number of CPU cores."""
    import torch

    from decrappify.devices import available_cores

    if device.startswith("cuda") and torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(torch.device(device))} ({available_cores()} cores)"
    return f"{available_cores()} CPU cores"


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


#: Classical references every model is scored against: interpolations of the noisy LR,
#: and the same of the noise-free LR ("oracle": a perfect denoiser, then interpolation).
REFERENCES = ("bicubic", "bilinear", "oracle_bicubic", "oracle_bilinear")


def noise_free(crappify: Any) -> Any:
    """The crappifier without its noise steps (its blur and downsampling only).

    Step parameters are drawn per step index, and every preset's noise steps come after
    its blur and downsampling, so the same seed gives the same blur as the full chain.
    """
    from decrappify.crappify.consistency import FORWARD_KINDS

    steps = [s for s in crappify.steps if s.kind in FORWARD_KINDS]
    return crappify.model_copy(update={"steps": steps})


def test_pairs(test_files: list[Path], crappify: Any) -> list[dict[str, Any]]:
    """Crappify every held-back image whole (fixed seeds), with its noise-free twin."""
    from decrappify.crappify import crappify_image
    from decrappify.io import read_image

    clean = noise_free(crappify)
    pairs = []
    for index, path in enumerate(test_files):
        hr = read_image(path)
        seed = TEST_SEED + index
        pairs.append(
            {
                "name": path.name,
                "gt": np.asarray(hr.data),
                "lr": np.asarray(crappify_image(hr, crappify, seed=seed).data),
                "lr_clean": np.asarray(crappify_image(hr, clean, seed=seed).data),
            }
        )
    return pairs


def reference_scores(pairs: list[dict[str, Any]], scale: int) -> list[dict[str, Any]]:
    """Normalised PSNR / SSIM / FRC of the classical references on every test pair."""
    from decrappify.metrics import evaluate_pair, upsample

    rows = []
    for pair in pairs:
        row: dict[str, Any] = {"image": pair["name"]}
        for name in REFERENCES:
            lr = pair["lr_clean"] if name.startswith("oracle") else pair["lr"]
            up = upsample(lr.astype(np.float32), scale, name.rpartition("_")[2])
            scores = evaluate_pair(up, pair["gt"])
            row.update(
                {
                    f"{name}_psnr": scores["psnr_norm"],
                    f"{name}_ssim": scores["ssim_norm"],
                    f"{name}_frc": scores["frc_px"],
                }
            )
        rows.append(row)
    return rows


def evaluate(model_path: Path, test_files: list[Path], crappify: Any) -> dict[str, Any]:
    """Score a model and the references on the held-back images (means and sd in summary)."""
    import torch

    from decrappify.metrics import evaluate_pair, upsample
    from decrappify.models import load_model
    from decrappify.normalize import normalize, percentile_range

    model = load_model(model_path)
    norm = model.info.normalization
    scale = model.info.generator.scale
    pairs = test_pairs(test_files, crappify)
    rows = reference_scores(pairs, scale)
    images = {}
    for row, pair in zip(rows, pairs, strict=True):
        lr, gt = pair["lr"], pair["gt"]
        lo, hi = percentile_range(lr, norm.low, norm.high)
        x = torch.from_numpy(normalize(lr, lo, hi)[None, None].astype(np.float32))
        start = time.perf_counter()
        with torch.inference_mode():
            pred = model.net(x)[0, 0].numpy()
        seconds = time.perf_counter() - start
        m = evaluate_pair(pred, gt)
        row.update(
            {
                "model_psnr": m["psnr_norm"],
                "model_ssim": m["ssim_norm"],
                "model_frc": m["frc_px"],
                "predict_s": seconds,
            }
        )
        images[pair["name"]] = (lr, upsample(lr.astype(np.float32), scale, "bicubic"), pred, gt)
    summary: dict[str, Any] = {}
    for key in rows[0]:
        if key in ("image", "predict_s"):
            continue
        values = np.array([r[key] for r in rows])
        summary[key] = {"mean": float(values.mean()), "sd": float(values.std(ddof=1))}
    for name in ("bicubic", "bilinear", "oracle_bicubic"):
        for metric in ("psnr", "ssim"):
            gain = summary[f"model_{metric}"]["mean"] - summary[f"{name}_{metric}"]["mean"]
            key = f"gain_{metric}" if name == "bicubic" else f"gain_{metric}_vs_{name}"
            summary[key] = gain
    return {"per_image": rows, "summary": summary, "images": images}


def figures(data: str, run_dir: Path, evaluation: dict[str, Any], scale: int) -> list[Path]:
    from decrappify.metrics import comparison_figure

    out = REPO / "docs" / "images"
    out.mkdir(parents=True, exist_ok=True)
    curves = out / f"train_{data}_curves.png"
    shutil.copyfile(run_dir / "curves.png", curves)
    name, (lr, bicubic, pred, gt) = next(iter(evaluation["images"].items()))
    comparison = comparison_figure(
        lr,
        bicubic,
        pred,
        gt,
        path=out / f"train_{data}_comparison.png",
        scale=scale,
        crop_size=256,
        title=f"{data}: held-back image {name}, default recipe, "
        f"{evaluation['minutes']:g} CPU minutes",
    )
    return [curves, comparison]


def gan_table(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Validation rows of the last pretraining checkpoint and of every GAN checkpoint."""
    rows, last_pretrain = [], None
    for entry in history:
        if "psnr" not in entry:
            continue
        if entry.get("phase") == "pretrain_generator":
            last_pretrain = {**entry, "label": "pretrained"}
        elif entry.get("phase") == "gan":
            rows.append({**entry, "label": f"GAN step {entry.get('step')}"})
    return ([last_pretrain] if last_pretrain and rows else []) + rows


def critic_notes(history: list[dict[str, Any]]) -> list[str]:
    """The critic pretraining notes (steps, loss, held-out accuracy)."""
    return [
        e["note"] for e in history if "critic_accuracy" in e or "critic pre" in e.get("note", "")
    ]


def print_gan(history: list[dict[str, Any]]) -> None:
    for note in critic_notes(history):
        print(note)
    rows = gan_table(history)
    if not rows:
        return
    print(f"\n{'checkpoint':16s} {'PSNR':>7s} {'SSIM':>7s} {'FRC px':>7s} {'HF power':>9s}")
    for r in rows:
        print(
            f"{r['label']:16s} {r['psnr']:7.2f} {r['ssim']:7.3f} {r.get('frc', float('nan')):7.3f} "
            f"{r.get('hf', float('nan')):9.3f}"
        )


def print_references(s: dict[str, Any]) -> None:
    print("references (held-back images, mean normalised PSNR / SSIM):")
    for name in REFERENCES:
        print(f"  {name:16s} {s[name + '_psnr']['mean']:6.2f} / {s[name + '_ssim']['mean']:.3f}")
    print(
        f"  model: {s['gain_psnr_vs_bilinear']:+.2f} dB / {s['gain_ssim_vs_bilinear']:+.3f} "
        f"over bilinear, {s['gain_psnr_vs_oracle_bicubic']:+.2f} dB / "
        f"{s['gain_ssim_vs_oracle_bicubic']:+.3f} over oracle bicubic"
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    import torch

    from decrappify.devices import available_cores

    train_files, test_files = split_files(args.data, args.data_root)
    device = device_name(args.device)
    config = build_config(args)
    run_dir = args.out or Path(f"/tmp/decrappify_bench/{args.data}_{args.tag}")
    if run_dir.exists():
        shutil.rmtree(run_dir)
    load_before = os.getloadavg()
    print(
        f"{args.data}: training on {len(train_files)} images ({config.data.validation.count} of "
        f"them for validation crops), testing on {len(test_files)} held-back images; budget "
        f"{args.minutes:g} min on {device} (torch {torch.__version__}); "
        f"load average {load_before[0]:.2f}",
        flush=True,
    )
    start, cpu_start = time.perf_counter(), cpu_seconds()
    result = train(args, config, train_files, run_dir)
    train_s, train_cpu = time.perf_counter() - start, cpu_seconds() - cpu_start
    load_after = os.getloadavg()
    evaluation = evaluate(result.model_path, test_files, config.resolved_crappify())
    evaluation["minutes"] = args.minutes
    s = evaluation["summary"]
    print(f"\n{'image':24s} {'bicubic PSNR':>12s} {'SSIM':>7s} {'model PSNR':>11s} {'SSIM':>7s}")
    for r in evaluation["per_image"]:
        print(
            f"{r['image']:24s} {r['bicubic_psnr']:12.2f} {r['bicubic_ssim']:7.3f} "
            f"{r['model_psnr']:11.2f} {r['model_ssim']:7.3f}"
        )
    print(
        f"{'mean':24s} {s['bicubic_psnr']['mean']:12.2f} {s['bicubic_ssim']['mean']:7.3f} "
        f"{s['model_psnr']['mean']:11.2f} {s['model_ssim']['mean']:7.3f}"
    )
    print(
        f"gain over bicubic: {s['gain_psnr']:+.2f} dB PSNR, {s['gain_ssim']:+.3f} SSIM; "
        f"FRC {s['bicubic_frc']['mean']:.2f} -> {s['model_frc']['mean']:.2f} px; "
        f"training {train_s / 60:.1f} min (budget {args.minutes:g}, CPU time "
        f"{train_cpu / 60:.1f} min), steps {result.steps}, "
        f"best from {result.best}; load average {load_before[0]:.2f} -> {load_after[0]:.2f}"
    )
    print_references(s)
    print_gan(result.history)
    record = {
        "data": args.data,
        "tag": args.tag,
        "minutes": args.minutes,
        "overrides": args.set,
        "train_seconds": train_s,
        "train_cpu_seconds": train_cpu,
        "steps": result.steps,
        "best": result.best,
        "validation": {"model": result.metrics, "bicubic": result.baseline},
        "test": {"summary": s, "per_image": evaluation["per_image"]},
        "load_average": {"before": load_before, "after": load_after},
        "cores": available_cores(),
        "device": device,
        "history": result.history,
        "config": config.resolved().model_dump(mode="json"),
    }
    snapshots = sorted((run_dir / "snapshots").glob("*m"), key=lambda p: float(p.name[:-1]))
    if snapshots:
        crappify = config.resolved_crappify()
        record["snapshots"] = {}
        print("\ngain vs. training minutes (snapshots of this run)")
        for path in snapshots:
            summary = evaluate(path, test_files, crappify)["summary"]
            record["snapshots"][path.name] = summary
            print(
                f"{path.name:>6s}: {summary['gain_psnr']:+.2f} dB PSNR, "
                f"{summary['gain_ssim']:+.3f} SSIM",
                flush=True,
            )
    (run_dir / "benchmark.json").write_text(json.dumps(record, indent=1))
    if args.figures:
        for path in figures(args.data, run_dir, evaluation, config.generator.scale):
            print(f"wrote {path}")


if __name__ == "__main__":
    main()
