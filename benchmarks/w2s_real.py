"""W2S real-data benchmark: a model trained on crappified data, judged on real noisy frames.

Usage::

    python benchmarks/w2s_real.py --minutes 20 --figures      # the real run (quiet machine)
    python benchmarks/w2s_real.py --minutes 1 --baselines input,gaussian   # a quick check
    python benchmarks/w2s_real.py --minutes 3 --models fitted,shipped   # fine-tune vs as shipped
    python benchmarks/w2s_real.py --minutes 15 --from none    # from random weights (before 16)

``train`` starts from the shipped ``fluo-denoise`` starting point by default (``--from
auto``: the fitted crappifier works on the same grid); ``--models shipped`` also scores that
starting point as it ships, with no training at all.

W2S (Zhou, El Helou et al. 2020) gives, for each of 20 fields of view (FOVs 081-100),
a real single-frame widefield acquisition (``w2s_avg1``, low SNR) and the mean of 400
frames of the same field (``w2s_avg400``, high SNR) on the same pixel grid: a real
denoising pair at scale 1. The FOVs are split three ways, so that nothing scored was seen
by any fit:

* **fitting FOVs** (081-085): ``decrappify crappify --fit`` on their real noisy frames,
  with their averages as ``--hr``, gives the fitted crappifier (printed, and drawn over the
  real frames' mean-variance curve); the classical baselines' parameters are chosen on
  them too (``evaluate --tune-lr/--tune-gt``);
* **training FOVs** (086-095): only their high-SNR averages are used, by ``decrappify
  train`` at ``--scale 1``, once with the fitted crappifier (``--crappify-config``) and
  once with the ``fluorescence`` preset, on the same budget and seed;
* **test FOVs** (096-100): ``decrappify predict`` on their real noisy frames, then
  ``decrappify evaluate`` against their averages, with the noisy input itself and the
  tuned classical denoisers (Gaussian, non-local means, total variation, BM3D when the
  ``bm3d`` package is installed) as baselines.

Every step runs the ``decrappify`` command a user would type (printed as it runs). The
normalised PSNR/SSIM (percentile-normalised ground truth, prediction matched by a
least-squares affine fit: the 8-bit W2S frames were each stretched on their own) are
tabulated; each model's data-consistency score on the test frames (the map ``predict``
writes by default: its own crappifier's forward model against the real input, see
``docs/predict.md``) and the time it costs next to prediction are recorded (from
``predict --report``); ``--tta`` also predicts with ``predict --tta`` and records the
mean's scores, the spread and the cost. Writes ``OUT/benchmark.json``; with
``--figures`` also ``docs/images/w2s_mean_variance.png`` and
``docs/images/w2s_real_comparison.png``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

DATA = Path("/work/shared/data/fluo")
REPO = Path(__file__).resolve().parents[1]
SPLIT = {
    "fit": range(81, 86),
    "train": range(86, 96),
    "test": range(96, 101),
}
DEFAULT_BASELINES = "input,gaussian,nl-means,tv,bm3d"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=20.0, help="training budget per model")
    parser.add_argument("--out", type=Path, default=Path("/tmp/decrappify_bench/w2s_real"))
    parser.add_argument("--data", type=Path, default=DATA, help="folder with w2s_avg1/400")
    parser.add_argument("--baselines", default=DEFAULT_BASELINES, help="evaluate --baselines")
    parser.add_argument("--device", default="auto", help="train/predict --device")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], help="train --set KEY=VALUE")
    parser.add_argument("--reuse", action="store_true", help="keep trained models in OUT")
    parser.add_argument("--figures", action="store_true", help="write docs/images/w2s_*")
    parser.add_argument("--tta", action="store_true", help="also test-time augmentation (8x)")
    parser.add_argument(
        "--models",
        default="fitted,preset",
        help="which models: fitted (fitted crappifier), preset (fluorescence preset), shipped "
        "(the shipped fluo-denoise starting point as it is, no training)",
    )
    parser.add_argument(
        "--from",
        dest="start_from",
        default=None,
        help="train --from: auto (the default: the shipped fluo-denoise), none, a model",
    )
    return parser.parse_args(argv)


def pairs(data: Path, fovs: range) -> list[tuple[Path, Path]]:
    """(avg1, avg400) files of some FOVs."""
    out = []
    for fov in fovs:
        noisy = sorted((data / "w2s_avg1").glob(f"input_avg1_{fov:03d}_*.tif"))
        clean = sorted((data / "w2s_avg400").glob(f"target_avg400_{fov:03d}_*.tif"))
        if len(noisy) != 1 or len(clean) != 1:
            sys.exit(f"{data}: expected one avg1 and one avg400 file of FOV {fov:03d}")
        out.append((noisy[0], clean[0]))
    return out


def run(*args: Any) -> float:
    """Run ``decrappify ARGS`` (printed first), stop on failure; return its seconds."""
    exe = Path(sys.executable).with_name("decrappify")
    cmd = [str(exe), *(str(a) for a in args)]
    print("$ decrappify " + " ".join(shlex.quote(c) for c in cmd[1:]), flush=True)
    start = time.perf_counter()
    done = subprocess.run(cmd, check=False)
    if done.returncode:
        sys.exit(f"decrappify {args[0]} failed with exit status {done.returncode}")
    return time.perf_counter() - start


def repeat(option: str, paths: list[Path]) -> list[str]:
    return [item for p in paths for item in (option, str(p))]


def mean_variance(
    noisy: np.ndarray, clean: np.ndarray, bins: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The real frame's variance per intensity bin, around its affinely matched average.

    Both W2S files were stretched to 8 bits on their own, so the average is first mapped
    onto the frame (least squares, unsaturated pixels); intensities are in the frame's
    normalised units (its 0.1 / 99.9 percentiles), as the crappifier's.
    """
    from decrappify.normalize import percentile_range

    x, y = noisy.astype(np.float64), clean.astype(np.float64)
    keep = (x > 0) & (x < 255) & (y < 255)
    a, b = np.linalg.lstsq(np.stack([y[keep], np.ones(keep.sum())], 1), x[keep], rcond=None)[0]
    lo, hi = percentile_range(x)
    mean = (a * y + b - lo) / (hi - lo)
    var = ((x - (a * y + b)) / (hi - lo)) ** 2
    which = np.digitize(mean[keep], bins)
    centres, variances = [], []
    for i in range(1, len(bins)):
        sel = which == i
        if sel.sum() > 200:
            centres.append(mean[keep][sel].mean())
            variances.append(var[keep][sel].mean())
    return np.array(centres), np.array(variances)


def crappifier_variance(config: Any, levels: np.ndarray, photons: float) -> np.ndarray:
    """Variance the fitted crappifier gives a clean level at a photon budget."""
    steps = {s.kind: s for s in config.steps}
    poisson, read = steps.get("poisson"), steps.get("read_noise")
    background = poisson.background if poisson is not None else 0.0
    background = float(np.mean(background)) if isinstance(background, tuple) else background
    sigma = read.sigma if read is not None else 0.0
    sigma = float(np.sqrt(np.prod(sigma))) if isinstance(sigma, tuple) else float(sigma)
    return (np.maximum(levels, 0) + background) / photons + (sigma / photons) ** 2


def mean_variance_figure(fit_pairs, test_pairs, fitted: Any, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import tifffile

    from decrappify.io.atomic import atomic_write

    bins = np.linspace(0, 1, 26)
    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=110)
    for group, color, label in ((fit_pairs, "tab:blue", "fitting"), (test_pairs, "0.5", "test")):
        for i, (noisy, clean) in enumerate(group):
            m, v = mean_variance(tifffile.imread(noisy), tifffile.imread(clean), bins)
            ax.plot(
                m,
                v,
                "o-",
                ms=2.5,
                lw=0.8,
                color=color,
                alpha=0.8,
                label=f"real frames, {label} FOVs" if i == 0 else None,
            )
    levels = np.linspace(0, 1, 50)
    poisson = next(s for s in fitted.steps if s.kind == "poisson")
    budgets = poisson.photons if isinstance(poisson.photons, tuple) else (poisson.photons,) * 2
    low, high = (crappifier_variance(fitted, levels, p) for p in (budgets[1], budgets[0]))
    ax.fill_between(
        levels,
        low,
        high,
        color="tab:orange",
        alpha=0.25,
        label=f"fitted crappifier, {budgets[0]:.3g}-{budgets[1]:.3g} photons",
    )
    middle = float(np.sqrt(budgets[0] * budgets[1]))
    ax.plot(
        levels,
        crappifier_variance(fitted, levels, middle),
        color="tab:orange",
        lw=2,
        label=f"median budget {middle:.3g} photons",
    )
    ax.set_xlabel("clean intensity (normalised: the frame's 0.1 / 99.9 percentiles)")
    ax.set_ylabel("variance of the real frame (normalised units²)")
    ax.set_title("W2S single frames: measured mean-variance vs the crappifier fitted by --fit")
    ax.legend(frameon=False, fontsize="small")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, None)
    fig.tight_layout()
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))


def comparison_picture(
    test_pair: tuple[Path, Path], panels: dict[str, Path | np.ndarray], scores: dict, path: Path
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import tifffile

    from decrappify.io import read_image
    from decrappify.io.atomic import atomic_write
    from decrappify.metrics import affine_fit
    from decrappify.metrics.core import gt_range

    gt = tifffile.imread(test_pair[1]).astype(np.float64)
    lo, hi = gt_range(gt)
    gt_n = (gt - lo) / (hi - lo)
    window = (slice(128, 384), slice(128, 384))
    fig, axes = plt.subplots(1, len(panels) + 1, figsize=(3.2 * (len(panels) + 1), 3.6), dpi=110)
    for ax, (name, source) in zip(axes, panels.items(), strict=False):
        data = source if isinstance(source, np.ndarray) else np.asarray(read_image(source).data)
        data = np.asarray(data, dtype=np.float64)
        a, b = affine_fit(data, gt_n)
        ax.imshow((a * data + b)[window], cmap="gray", vmin=0, vmax=1)
        score = scores.get(name)
        ax.set_title(
            name + ("" if score is None else f"\n{score[0]:.2f} dB, SSIM {score[1]:.3f}"),
            fontsize="small",
        )
    axes[-1].imshow(gt_n[window], cmap="gray", vmin=0, vmax=1)
    axes[-1].set_title("average of 400 frames\n(ground truth)", fontsize="small")
    for ax in axes:
        ax.axis("off")
    fig.suptitle(f"W2S held-back field {test_pair[0].stem} (central 256² crop)", fontsize="medium")
    fig.tight_layout(rect=(0, 0, 1, 0.9))
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))


def report_info(report: Path) -> dict[str, dict[str, Any]]:
    """Per-input ``info`` of a ``predict --report`` file, by input stem."""
    doc = json.loads(report.read_text())
    return {Path(r["input"]).stem: r["info"] for r in doc["results"]}


def consistency(model: Path, test_pairs, report: Path) -> dict[str, Any]:
    """The data-consistency summaries ``predict`` wrote (its default map), and a reference.

    The reference scores each frame's own average of 400 frames as if it were the
    prediction (what a perfect restoration would score with this crappifier).
    """
    import tifffile

    from decrappify import api
    from decrappify.config.crappify import CrappifyConfig
    from decrappify.crappify.consistency import image_consistency
    from decrappify.normalize import percentile_range

    info = api.model_info(model)
    config = CrappifyConfig.model_validate(info.crappify)
    norm = info.normalization
    infos = report_info(report)
    out, seconds, predict_s = {}, 0.0, 0.0
    for noisy, clean in test_pairs:
        lr = tifffile.imread(noisy)
        lo_hi = percentile_range(lr, norm.low, norm.high)
        truth = image_consistency(tifffile.imread(clean), lr, config, lo_hi=lo_hi)
        entry = infos[noisy.stem]
        summary = entry["trust"]["consistency"]
        seconds += entry["trust_seconds"]
        predict_s += entry["compute_seconds"] or 0.0
        out[noisy.stem] = {
            "score": summary["score"],
            "flagged": summary["flagged_fraction"],
            "ground_truth_score": truth.score,
        }
    return {"per_image": out, "seconds": seconds, "compute_seconds": predict_s}


def tta(pred_dir: Path, tta_dir: Path, test_pairs) -> dict[str, Any]:
    """``predict --tta`` against the plain prediction: scores, spread and cost, per frame."""
    import tifffile

    from decrappify.io import read_image
    from decrappify.metrics import evaluate_pair

    plain, augmented = report_info(pred_dir / "report.json"), report_info(tta_dir / "report.json")
    out = {}
    for noisy, clean in test_pairs:
        gt = tifffile.imread(clean)
        single = np.asarray(read_image(pred_dir / f"{noisy.stem}.zarr").data)
        mean = np.asarray(read_image(tta_dir / f"{noisy.stem}.zarr").data)
        a, p = augmented[noisy.stem], plain[noisy.stem]
        out[noisy.stem] = {
            "psnr_norm": evaluate_pair(single, gt)["psnr_norm"],
            "tta_psnr_norm": evaluate_pair(mean, gt)["psnr_norm"],
            "tta_std_mean": a["trust"]["uncertainty"]["mean"],
            "cost_ratio": (a["compute_seconds"] or 0.0) / (p["compute_seconds"] or 1.0),
        }
    return out


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from decrappify.config.crappify import CrappifyConfig
    from decrappify.metrics.denoise import bm3d_available

    fit_pairs, train_pairs, test_pairs = (pairs(args.data.resolve(), SPLIT[k]) for k in SPLIT)
    out = args.out
    if out.exists() and not args.reuse:
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    baselines = args.baselines
    if "bm3d" in baselines.split(",") and not bm3d_available():
        print("bm3d is not installed (pip install 'decrappify[bm3d]'): left out", flush=True)
        baselines = ",".join(b for b in baselines.split(",") if b != "bm3d")
    load_before = os.getloadavg()
    timings: dict[str, float] = {}

    # 1. fit the noise model on the fitting FOVs' real noisy frames (+ their averages)
    fitted_yaml = out / "fitted.yaml"
    timings["fit"] = run(
        "crappify",
        *repeat("--fit", [n for n, _ in fit_pairs]),
        *repeat("--hr", [c for _, c in fit_pairs]),
        "--out",
        fitted_yaml,
        "--overwrite",  # --reuse keeps OUT: the fit (deterministic) writes the same file again
    )
    fitted = CrappifyConfig.from_yaml(fitted_yaml)

    # 2. train on the training FOVs' averages only: fitted crappifier vs the preset
    hr_dir = out / "train_hr"
    hr_dir.mkdir(exist_ok=True)
    for _, clean in train_pairs:
        target = hr_dir / clean.name
        if not target.exists():
            target.symlink_to(clean)
    common = [
        "--scale",
        "1",
        "--time-budget",
        f"{args.minutes * 60:.0f}",
        "--seed",
        args.seed,
        "--device",
        args.device,
        "--set",
        "data.validation.count=2",
        "-q",
        *[item for kv in args.set for item in ("--set", kv)],
    ]
    if args.start_from is not None:
        common += ["--from", args.start_from]
    choices = {
        "fitted": ("fitted crappifier", ["--crappify-config", fitted_yaml]),
        "preset": ("preset crappifier", ["--preset", "fluorescence"]),
        "shipped": ("shipped fluo-denoise", None),
    }
    wanted = [m.strip() for m in args.models.split(",") if m.strip()]
    if not wanted or any(m not in choices for m in wanted):
        sys.exit(f"--models: expected some of {', '.join(choices)} (got {args.models!r})")
    runs: dict[str, Path] = {}  # model name -> the model (a run's model/, or a starting point)
    for name, source in (choices[m] for m in wanted):
        if source is None:  # used as shipped, no training
            runs[name] = Path("fluo-denoise")
            continue
        run_dir = out / name.split()[0]
        runs[name] = run_dir / "model"
        if args.reuse and (run_dir / "model").exists():
            print(f"{name}: reusing {run_dir / 'model'}")
            continue
        if run_dir.exists():
            shutil.rmtree(run_dir)
        timings[f"train {name}"] = run("train", "--hr", hr_dir, "--out", run_dir, *source, *common)

    # 3. predict the test FOVs' real noisy frames; 4. evaluate against their averages
    test_lr = [n for n, _ in test_pairs]
    results: dict[str, Any] = {}
    tuning = [*repeat("--tune-lr", [n for n, _ in fit_pairs])]
    tuning += repeat("--tune-gt", [c for _, c in fit_pairs])
    for name, model in runs.items():
        pred_dir = out / f"pred_{name.split()[0]}"
        timings[f"predict {name}"] = run(
            "predict",
            model,
            *test_lr,
            "--out",
            pred_dir,
            "--device",
            args.device,
            "--report",
            pred_dir / "report.json",
            "--overwrite",
            "-q",
        )
        metrics_json = out / f"metrics_{name.split()[0]}.json"
        timings[f"evaluate {name}"] = run(
            "evaluate",
            *repeat("--pred", sorted(pred_dir.glob("*.zarr"))),
            *repeat("--gt", [c for _, c in test_pairs]),
            *repeat("--lr", test_lr),
            "--baselines",
            baselines,
            *tuning,
            "--json",
            metrics_json,
            "-q",
        )
        doc = json.loads(metrics_json.read_text())
        # the next model's evaluation reuses the parameters chosen (tuning runs once)
        baselines = ",".join(doc["mean"]["baselines"])
        tuning = []
        results[name] = {
            "metrics": doc,
            "consistency": consistency(model, test_pairs, pred_dir / "report.json"),
            "pred_dir": pred_dir,
        }
        if args.tta:
            tta_dir = out / f"pred_tta_{name.split()[0]}"
            timings[f"predict --tta {name}"] = run(
                "predict", model, *test_lr, "--out", tta_dir, "--device",
                args.device, "--tta", "--no-consistency", "--report", tta_dir / "report.json",
                "--overwrite", "-q",
            )  # fmt: skip
            results[name]["tta"] = tta(pred_dir, tta_dir, test_pairs)

    # the table: models, then the baselines (the same in both documents)
    first = next(iter(results.values()))["metrics"]["mean"]
    rows = {name: r["metrics"]["mean"] for name, r in results.items()}
    table = {name: (m["psnr_norm"]["mean"], m["ssim_norm"]["mean"]) for name, m in rows.items()}
    for base, m in first["baselines"].items():
        table[base] = (m["psnr_norm"]["mean"], m["ssim_norm"]["mean"])
    print(
        f"\n{'method':28s} {'PSNR norm (dB)':>15s} {'SSIM norm':>10s}   (5 held-back real frames)"
    )
    for name, (p, s) in sorted(table.items(), key=lambda kv: -kv[1][0]):
        print(f"{name:28s} {p:15.2f} {s:10.4f}")
    classical = {k: v for k, v in table.items() if k not in results and k != "input"}
    best_classical = max(classical.items(), key=lambda kv: kv[1][0]) if classical else None
    print("\nfitted crappifier (config):", fitted.summary())
    print((fitted_yaml.read_text().split("name:")[0]).rstrip())
    if best_classical:
        for name in results:
            print(
                f"{name} vs best classical ({best_classical[0]}): "
                f"{table[name][0] - best_classical[1][0]:+.2f} dB"
            )
    for name, r in results.items():
        c = r["consistency"]
        scores = [v["score"] for v in c["per_image"].values()]
        truth = [v["ground_truth_score"] for v in c["per_image"].values()]
        predict_s = timings[f"predict {name}"]
        share = 100 * c["seconds"] / max(c["compute_seconds"], 1e-9)
        print(
            f"{name}: data consistency on the real frames {np.mean(scores):.2f} (1 = explained "
            f"by the noise, < 1 = keeps noise; the averages of 400 frames score "
            f"{np.mean(truth):.2f}); the map took {c['seconds']:.2f} s for 5 frames, the "
            f"prediction {c['compute_seconds']:.2f} s ({share:.1f} %; the whole command "
            f"{predict_s:.1f} s)"
        )
        if "tta" in r:
            t = r["tta"].values()
            print(
                f"{name}: TTA mean {np.mean([v['tta_psnr_norm'] for v in t]):.2f} dB vs single "
                f"{np.mean([v['psnr_norm'] for v in t]):.2f} dB, mean spread "
                f"{np.mean([v['tta_std_mean'] for v in t]):.4f}, cost "
                f"{np.mean([v['cost_ratio'] for v in t]):.1f}x a prediction"
            )
    load_after = os.getloadavg()
    record = {
        "minutes": args.minutes,
        "split": {k: [f"{v:03d}" for v in fovs] for k, fovs in SPLIT.items()},
        "fitted_config": fitted.model_dump(mode="json"),
        "table": {k: {"psnr_norm": v[0], "ssim_norm": v[1]} for k, v in table.items()},
        "results": {
            name: {k: v for k, v in r.items() if k != "pred_dir"} for name, r in results.items()
        },
        "timings_seconds": timings,
        "load_average": {"before": load_before, "after": load_after},
        "overrides": args.set,
        "from": args.start_from,
        "models": {name: str(model) for name, model in runs.items()},
    }
    (out / "benchmark.json").write_text(json.dumps(record, indent=1, default=str))
    print(f"wrote {out / 'benchmark.json'}")
    if args.figures:
        import tifffile

        from decrappify.metrics.baselines import parse_baseline

        images = REPO / "docs" / "images"
        images.mkdir(parents=True, exist_ok=True)
        path = mean_variance_figure(fit_pairs, test_pairs, fitted, images / "w2s_mean_variance.png")
        print(f"wrote {path}")
        pair = test_pairs[0]
        entry = next(iter(results.values()))["metrics"][pair[1].stem]
        noisy = tifffile.imread(pair[0])
        panels: dict[str, Any] = {"single frame (input)": noisy}
        scores: dict[str, tuple[float, float]] = {}
        shown = ["input", best_classical[0]] if best_classical else ["input"]
        for spec in shown:
            if spec in entry["baselines"]:
                label = "single frame (input)" if spec == "input" else spec
                panels[label] = parse_baseline(spec).apply(noisy, noisy.shape)
                scores[label] = (
                    entry["baselines"][spec]["psnr_norm"],
                    entry["baselines"][spec]["ssim_norm"],
                )
        for model_name, r in results.items():
            model_entry = r["metrics"][pair[1].stem]
            label = f"model, {model_name}"
            panels[label] = r["pred_dir"] / f"{pair[0].stem}.zarr"
            scores[label] = (model_entry["psnr_norm"], model_entry["ssim_norm"])
        path = comparison_picture(pair, panels, scores, images / "w2s_real_comparison.png")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
