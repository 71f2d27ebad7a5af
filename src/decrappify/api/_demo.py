"""The demo: the whole method end to end on data generated here, on a small budget.

``decrappify demo`` (the README's main job) generates high-resolution images, crappifies
held-back ones, runs the full NoGAN schedule on the rest, super-resolves the held-back
low-resolution images with the tiled predictor, scores them against bicubic
interpolation and writes a report folder.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from decrappify.api._crappify import iter_crappify
from decrappify.api._evaluate import iter_evaluate
from decrappify.api._predict import iter_predict
from decrappify.api._train import iter_train, train_config
from decrappify.api.common import PathLike
from decrappify.errors import InputError, OutputError
from decrappify.events import Progress, run_to_end
from decrappify.io.atomic import remove_path

#: Seconds of the budget kept for everything but training (data, prediction, scoring).
RESERVED_SECONDS = 45.0
#: Shortest training the demo accepts.
MIN_TRAIN_SECONDS = 30.0
#: Held-back test images and training images, and their size.
N_TEST, N_TRAIN, SIZE = 2, 8, 512
#: Seed offset of the held-back images: far from the seeds the shipped starting points
#: were trained on (``seeds 0-11`` in their provenance), so that the demo scores a
#: fine-tuned starting point on images it never saw.
HELD_BACK_SEED = 500
#: The demo's recipe for its few minutes (overrides of the default TrainConfig; the user's
#: own overrides win). The network is the default one, fine-tuned from the matching
#: shipped starting point as ``decrappify train`` does; 128-px patches and L1 alone leave
#: more steps in the budget. The critic's share buys the ~100 steps it needs at the
#: default network's step time, so every NoGAN phase runs: +2.40 dB over bicubic in
#: 264 s on 2 quiet CPU cores (docs/benchmarks.md).
DEMO_RECIPE: dict[str, Any] = {
    "data.patch_size": 128,
    "loss.weights": {"l1": 1.0},
    "save_outputs.budget_share": 0.02,
    "pretrain_critic.budget_share": 0.13,
    "gan.budget_share": 0.05,
}


@dataclass
class DemoReport:
    """What the demo produced.

    Parameters
    ----------
    out_dir : Path
        The report folder.
    metrics : dict
        The evaluation JSON document (per image, ``mean``, ``baselines``).
    gain_db : float
        Mean normalised PSNR of the model minus that of the plain baseline (bicubic, or the
        noisy input itself at scale 1), on the held-back images.
    files : dict of str to Path
        The main outputs by role (model, predictions, metrics, figure, curves ...).
    seconds : float
        Wall-clock time of the whole demo.
    table : MetricsTable
        The table printed at the end.
    """

    out_dir: Path
    metrics: dict[str, Any]
    gain_db: float
    files: dict[str, Path] = field(default_factory=dict)
    seconds: float = 0.0
    table: Any = None
    baseline: str = "bicubic"


def _phase(name: str, events: Generator[Progress, None, Any]) -> Generator[Progress, None, Any]:
    """Relay a sub-operation's events under the demo step's name."""
    while True:
        try:
            event = next(events)
        except StopIteration as stop:
            return stop.value
        phase = name if event.phase in (name, "") else f"{name}: {event.phase}"
        yield dataclasses.replace(event, phase=phase)


def iter_demo(
    out_dir: PathLike = "decrappify-demo",
    *,
    time_budget: str | float = "5m",
    kind: Literal["em", "fluorescence"] = "fluorescence",
    seed: int = 0,
    scale: int = 4,
    overwrite: bool = False,
    overrides: dict[str, Any] | None = None,
) -> Generator[Progress, None, DemoReport]:
    """Run the whole method on synthetic data and write a report folder.

    Parameters
    ----------
    out_dir : path
        Report folder; must not exist yet unless ``overwrite``.
    time_budget : str or float
        Wall-clock budget of the whole demo (``"5m"``, seconds ...); training gets what
        is left after a reserve for data, prediction and scoring.
    kind : {"em", "fluorescence"}
        Synthetic data and matching crappify preset. Fluorescence (the default) gains
        about 2.4 dB over bicubic in the 5-minute budget on 2 CPU cores.
    seed : int
        Seed of the data, the crappifier and the training.
    scale : int
        Super-resolution factor (4); 1 is restoration on the same grid (denoising and
        deblurring), scored against the noisy input itself.
    overwrite : bool
        Replace an existing report folder.
    overrides : dict or None
        Training settings to change, by dotted key (as ``decrappify train --set``).

    Yields
    ------
    Progress
        Events of each step (``data``, ``train: <phase>``, ``predict``, ``evaluate``).

    Returns
    -------
    DemoReport
        Where everything is, and the gain over bicubic.
    """
    from decrappify.durations import parse_duration

    start = time.perf_counter()
    total = parse_duration(time_budget, name="--time-budget")
    train_seconds = total - RESERVED_SECONDS
    if train_seconds < MIN_TRAIN_SECONDS:
        raise InputError(
            f"demo: --time-budget must leave at least {MIN_TRAIN_SECONDS:.0f} s for training "
            f"after {RESERVED_SECONDS:.0f} s for data, prediction and scoring (got {time_budget!r})"
        )
    recipe = {**DEMO_RECIPE, **(overrides or {})}
    train_config(preset=_preset(kind), scale=scale, seed=seed, overrides=recipe)  # fail early
    out = Path(out_dir)
    if os.path.lexists(out):
        if not overwrite:
            raise OutputError(f"{out}: already exists; pass --overwrite or choose another --out")
        if not out.is_dir():
            raise OutputError(f"{out}: is a file; --out names the demo's report folder")
    data = out / "data" / "train"
    test_hr, test_lr = out / "data" / "test_hr", out / "data" / "test_lr"
    try:
        remove_path(out)
        for folder in (data, test_hr):
            folder.mkdir(parents=True)
    except OSError as err:
        remove_path(out)
        raise OutputError(
            f"{out}: cannot create the demo folder ({err.strerror or err}); choose another --out"
        ) from err
    try:
        return (
            yield from _run_demo(
                out,
                data,
                test_hr,
                test_lr,
                start,
                train_seconds,
                total,
                kind,
                seed,
                scale,
                recipe,
            )
        )
    except BaseException:
        remove_path(out)  # a failed or cancelled demo leaves no half-made report
        raise


def _preset(kind: str) -> str:
    return "em" if kind == "em" else "fluorescence"


def _run_demo(
    out: Path,
    data: Path,
    test_hr: Path,
    test_lr: Path,
    start: float,
    train_seconds: float,
    total: float,
    kind: str,
    seed: int,
    scale: int,
    recipe: dict[str, Any],
) -> Generator[Progress, None, DemoReport]:
    from decrappify.metrics.baselines import baseline_label

    # 1. data: synthetic HR images (train + held back), the held-back ones crappified
    yield from _iter_data(data, test_hr, test_lr, kind=kind, seed=seed, scale=scale)
    preset = _preset(kind)

    # 2. train with the full NoGAN schedule on what is left of the budget (at least the
    # minimum: on a busy machine the data can take longer than the reserve)
    run_dir = out / "run"
    left = train_seconds - (time.perf_counter() - start)
    if left < MIN_TRAIN_SECONDS:
        yield Progress(
            "train",
            0,
            None,
            message=f"preparing the data used {time.perf_counter() - start:.0f} s of the "
            f"budget; training for {MIN_TRAIN_SECONDS:.0f} s (the least it can)",
        )
    trained = yield from _phase(
        "train",
        iter_train(
            [data],
            run_dir,
            preset=preset,
            scale=scale,
            time_budget=max(left, MIN_TRAIN_SECONDS),
            seed=seed,
            overrides=recipe,
        ),
    )

    # 3. super-resolve the held-back low-res images with the tiled predictor
    pred_dir = out / "predictions"
    results = yield from _phase(
        "predict", iter_predict(trained.model_path, [test_lr], pred_dir, {"format": "zarr"})
    )
    _raise_failed(results)

    # 4. score against ground truth and the plain baselines
    plain = baseline_label(scale)
    report = yield from _phase(
        "evaluate",
        iter_evaluate(
            sorted(pred_dir.glob("*.zarr")),
            sorted(test_hr.glob("*.tif")),
            sorted(test_lr.glob("*.zarr")),
            baselines=("bicubic", "bilinear") if scale > 1 else (plain, "gaussian"),
            json_path=out / "metrics.json",
            csv_path=out / "metrics.csv",
            figure=out / "comparison.png",
        ),
    )
    mean = report.json["mean"]
    gain = mean["psnr_norm"]["mean"] - mean["baselines"][plain]["psnr_norm"]["mean"]
    seconds = time.perf_counter() - start
    files = {
        "model": trained.model_path,
        "predictions": pred_dir,
        "metrics_json": out / "metrics.json",
        "metrics_csv": out / "metrics.csv",
        "training_log": run_dir / "log.csv",
        "training_curves": run_dir / "curves.png",
        "test_hr": test_hr,
        "test_lr": test_lr,
    }
    files.update({f"figure_{p.stem}": p for p in report.written if p.suffix == ".png"})
    facts = {
        "kind": kind,
        "scale": scale,
        "budget_seconds": total,
        "seconds": round(seconds, 1),
        f"psnr_norm_gain_db_vs_{plain}": round(gain, 3),
    }
    files["summary"] = _write_summary(out, facts, trained, files)
    return DemoReport(
        out_dir=out,
        metrics=report.json,
        gain_db=gain,
        files=files,
        seconds=seconds,
        table=report.table,
        baseline=plain,
    )


def image_seed(seed: int, i: int) -> int:
    """The synthetic image seed of the demo's image ``i`` (training images first)."""
    return seed * 1000 + i + (HELD_BACK_SEED if i >= N_TRAIN else 0)


def _iter_data(
    data: Path, test_hr: Path, test_lr: Path, *, kind: str, seed: int, scale: int
) -> Generator[Progress, None, None]:
    """Write the synthetic HR images and crappify the held-back ones as training will."""
    from decrappify.crappify import get_preset
    from decrappify.io import write_image
    from decrappify.sample import synthetic_image

    n = N_TRAIN + N_TEST
    for i in range(n):
        image = synthetic_image(kind, (SIZE, SIZE), seed=image_seed(seed, i))
        target = (data if i < N_TRAIN else test_hr) / f"{kind}_{i:02d}.tif"
        write_image(image, target)
        yield Progress(phase="data", step=i + 1, total=n, message=target.name)
    results = yield from _phase(
        "crappify held-back",
        # OME-Zarr keeps the LR grid's translation, so layers overlay exactly in napari
        iter_crappify(
            [test_hr],
            test_lr,
            config=get_preset(_preset(kind), scale=scale),
            seed=seed + 1,
            fmt="zarr",
        ),
    )
    _raise_failed(results)


def _write_summary(out: Path, facts: dict[str, Any], trained: Any, files: dict[str, Path]) -> Path:
    """Write ``summary.json``: the demo's figures, the training's outcome, the files made."""
    summary = {
        **facts,
        "training": {
            "metrics": trained.metrics,
            "baseline": trained.baseline,
            "best": trained.best,
            "steps": trained.steps,
        },
        "files": {k: str(v.relative_to(out)) for k, v in files.items()},
    }
    path = out / "summary.json"
    path.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return path


def _raise_failed(results: list[Any]) -> None:
    failed = [r for r in results if not r.ok]
    if failed:
        raise InputError(f"demo: {failed[0].input}: {failed[0].error}")


def demo(out_dir: PathLike = "decrappify-demo", **kwargs: Any) -> DemoReport:
    """Run :func:`iter_demo` to the end.

    Parameters
    ----------
    out_dir : path
        Report folder.
    **kwargs
        As :func:`iter_demo`.

    Returns
    -------
    DemoReport
        The report.
    """
    report = run_to_end(iter_demo(out_dir, **kwargs))
    assert report is not None
    return report
