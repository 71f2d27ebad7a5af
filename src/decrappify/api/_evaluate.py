"""Evaluate: score predictions against ground truth and interpolation baselines."""

from __future__ import annotations

import json
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from decrappify.api._compare import AUTO, iter_compare
from decrappify.api.common import PathLike
from decrappify.errors import DecrappifyError, InputError, OutputError
from decrappify.events import Progress, run_to_end

#: Baselines ``evaluate`` knows: interpolations, the input itself (scale 1), denoisers.
BASELINES = ("nearest", "bilinear", "bicubic", "input", "gaussian", "nl-means", "tv", "bm3d")

#: Keys of the JSON report that are not image names.
RESERVED_NAMES = ("mean", "failed", "warnings")


@dataclass
class EvaluationReport:
    """What :func:`iter_evaluate` found and wrote.

    Parameters
    ----------
    results : dict
        Image name → :class:`decrappify.metrics.StackResult`.
    json : dict
        The JSON document (see :func:`decrappify.metrics.results_to_json`).
    table : MetricsTable
        Rows per image and method, and means.
    written : list of Path
        Files written (JSON, CSV, figures).
    tuned : dict
        Denoiser name → :class:`decrappify.metrics.denoise.TuneResult`, for the
        denoisers whose parameter was chosen on the tuning images.
    failed : list of dict
        Pairs that could not be scored: ``pred``, ``gt`` and the one-line ``error``.
    warnings : list of str
        Pairs whose intensities are on different scales (see
        :func:`~decrappify.api._compare.intensity_mismatch`).
    notes : list of str
        Pairs put on one grid by resampling or cropping, and how (``<name>: ...``).
    """

    results: dict[str, Any]
    json: dict[str, Any]
    table: Any
    written: list[Path] = field(default_factory=list)
    tuned: dict[str, Any] = field(default_factory=dict)
    failed: list[dict[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def parse_baselines(text: str | Sequence[str] | None) -> tuple[str, ...]:
    """Parse ``"bicubic,bilinear"`` (or a list) into validated baseline specs.

    Parameters
    ----------
    text : str, sequence of str or None
        Comma-separated names (``auto``, ``nearest``, ``bilinear``, ``bicubic``,
        ``input``, ``gaussian``, ``nl-means``, ``tv``, ``bm3d``), a denoiser optionally
        with its parameter (``gaussian=1.5``), a sequence, or None/empty for none.

    Returns
    -------
    tuple of str
        The specs, in the order given (``auto`` is kept and resolved per image).

    Raises
    ------
    InputError
        For an unknown name or a bad parameter.
    """
    from decrappify.metrics.baselines import parse_baseline

    if not text:
        return ()
    items = text.split(",") if isinstance(text, str) else list(text)
    names = tuple(dict.fromkeys(i.strip().lower() for i in items if i.strip()))
    unknown = [n for n in names if n.partition("=")[0].strip() not in (*BASELINES, AUTO)]
    if unknown:
        raise InputError(
            f"--baselines: unknown {', '.join(unknown)}; expected any of {AUTO}, "
            f"{', '.join(BASELINES)}"
        )
    return tuple(n if n == AUTO else parse_baseline(n).key for n in names)


def tune_baselines(
    specs: Sequence[str],
    tune_lr: Sequence[PathLike],
    tune_gt: Sequence[PathLike],
) -> dict[str, Any]:
    """Choose each denoiser's parameter on tuning pairs (never the evaluated images).

    Parameters
    ----------
    specs : sequence of str
        Baselines; denoisers without a parameter are tuned, the others are left alone.
    tune_lr, tune_gt : sequence of path
        Noisy inputs and their ground truths on the same grid (files, folders, globs),
        paired by name; the central 256² of every plane is a tuning pair (only that is
        read from lazy files).

    Returns
    -------
    dict
        Denoiser name → :class:`~decrappify.metrics.denoise.TuneResult`.

    Raises
    ------
    InputError
        For unpaired lists or images of different shapes.
    """
    from decrappify.io import expand_inputs, read_image
    from decrappify.io.pairing import pair_by_name
    from decrappify.metrics.denoise import DENOISERS, TUNE_CROP, central_window, tune_denoiser

    names = [s for s in specs if s in DENOISERS]
    if not names:
        return {}
    lr_paths = expand_inputs(tune_lr)
    labels = ("--tune-lr", "--tune-gt")
    gt_paths = pair_by_name(lr_paths, expand_inputs(tune_gt), labels, "tuning input")
    noisy, clean = [], []
    for lr_path, gt_path in zip(lr_paths, gt_paths, strict=True):
        lr_img, gt_img = read_image(lr_path), read_image(gt_path)
        if lr_img.shape != gt_img.shape:
            raise InputError(
                f"{lr_path}: tuning pairs must share one grid; shape {lr_img.shape} but "
                f"{gt_path} has {gt_img.shape}"
            )
        window = central_window(lr_img.shape, TUNE_CROP)  # read only what tuning uses
        planes = range(lr_img.shape[0]) if lr_img.ndim == 3 else [None]
        for plane in planes:
            index = window if plane is None else (plane, *window)
            noisy.append(np.asarray(lr_img.data[index]))
            clean.append(np.asarray(gt_img.data[index]))
    return {name: tune_denoiser(name, noisy, clean, crop=None) for name in names}


def iter_evaluate(
    pred: Sequence[PathLike],
    gt: Sequence[PathLike],
    lr: Sequence[PathLike] | None = None,
    *,
    baselines: str | Sequence[str] | None = (AUTO,),
    json_path: PathLike | None = None,
    csv_path: PathLike | None = None,
    figure: PathLike | None = None,
    crop: bool = False,
    resize: bool = False,
    scale: int | None = None,
    tune_lr: Sequence[PathLike] | None = None,
    tune_gt: Sequence[PathLike] | None = None,
) -> Generator[Progress, None, EvaluationReport]:
    """Score each prediction against its ground truth (and baselines from its LR input).

    Parameters
    ----------
    pred, gt : sequence of path
        Predictions and ground truths, paired by file name (files, folders or globs;
        the trust maps of predictions are skipped).
    lr : sequence of path or None
        The low-resolution inputs, paired by name, for the interpolation baselines.
    baselines : str or sequence of str or None
        Comma-separated in a string: ``auto`` (bicubic, or the input itself at scale 1),
        ``nearest``, ``bilinear``, ``bicubic``, ``input`` (scale 1), or the denoisers
        ``gaussian``, ``nl-means``, ``tv``, ``bm3d``, each optionally with its parameter
        (``gaussian=1.5``; see :mod:`decrappify.metrics.denoise`). Denoisers run on the
        LR grid and are interpolated bicubically at scales above 1.
    json_path, csv_path : path or None
        Where to write the JSON and CSV reports.
    figure : path or None
        Comparison figure (LR | baseline | prediction | GT, error maps, FRC). With several
        images, one figure per image named ``<stem>-<image>.png``.
    crop, resize : bool
        How to handle grids that differ (see :func:`decrappify.metrics.evaluate_stack`).
        Without them (and ``scale``), images that record their pixel size are put on one
        grid from where they lie in the world, as napari's Compare widget does
        (:func:`decrappify.api._compare.plan_grid`).
    scale : int or None
        LR → GT factor, inferred from the pixel sizes or the shapes when None.
    tune_lr, tune_gt : sequence of path or None
        Noisy images and their ground truths (same grid), never the evaluated ones: each
        denoiser given without a parameter gets the one with the best mean normalised
        PSNR on them (:func:`tune_baselines`); without them, its default.

    Yields
    ------
    Progress
        One event per plane scored; ``phase`` is the image name.

    Returns
    -------
    EvaluationReport
        Results, the JSON document (with ``"failed"`` pairs and intensity ``"warnings"``
        when there are any), the table, the files written, the failures and warnings.

    Raises
    ------
    InputError
        When no pair could be scored (the first error), for unpaired lists, unknown
        baselines, or ``figure`` without ``lr``.
    """
    from decrappify.io.locks import lock_outputs
    from decrappify.metrics import format_table

    names = parse_baselines(baselines)
    if bool(tune_lr) != bool(tune_gt):
        raise InputError("--tune-lr and --tune-gt go together: noisy images and their ground truth")
    pairs = pair_inputs(pred, gt, lr)
    if figure and pairs[2] is None:
        raise InputError("--figure needs the low-res inputs (--lr) to draw a baseline")
    targets = plan_reports(pairs, json_path, csv_path, figure, tune=(tune_lr, tune_gt))
    tuned = tune_baselines(names, tune_lr, tune_gt) if tune_lr and tune_gt else {}
    if tuned:
        yield Progress(
            "tune",
            1,
            1,
            message=", ".join(f"{t.spec} ({t.n_images} images)" for t in tuned.values()),
        )
    grid = {"crop": crop, "resize": resize, "scale": scale}
    scored = yield from _score_pairs(pairs, names, tuned, grid)
    failed = scored.failed
    if not scored.results:
        more = f" (and {len(failed) - 1} more failed pairs)" if len(failed) > 1 else ""
        raise InputError(failed[0]["error"] + more)
    with lock_outputs(targets):
        doc, written = _write_reports(scored, json_path, csv_path, figure, len(pairs[0]))
    return EvaluationReport(
        results=scored.results,
        json=doc,
        table=format_table(scored.results),
        written=written,
        failed=failed,
        warnings=scored.warnings,
        notes=scored.notes,
        tuned=tuned,
    )


def pair_inputs(
    pred: Sequence[PathLike], gt: Sequence[PathLike], lr: Sequence[PathLike] | None
) -> tuple[list[Path], list[Path], list[Path] | None]:
    """Expand the predictions, ground truths and LR inputs and pair them by name.

    Folders and patterns skip the trust maps ``decrappify predict`` writes beside its TIFF
    outputs (:func:`decrappify.io.expand_inputs`); the lists are matched by file name
    whatever their order (:func:`decrappify.io.pairing.pair_by_name`).

    Parameters
    ----------
    pred, gt : sequence of path
        Predictions and ground truths (files, folders or globs).
    lr : sequence of path or None
        Low-resolution inputs.

    Returns
    -------
    tuple
        ``(pred_paths, gt_paths, lr_paths or None)``, the i-th of each belonging together.

    Raises
    ------
    InputError
        For lists of different lengths or names that do not match.
    """
    from decrappify.io import expand_inputs
    from decrappify.io.pairing import pair_by_name
    from decrappify.io.paths import drop_trust_maps

    pred_paths = drop_trust_maps(expand_inputs(pred))
    gt_paths = pair_by_name(pred_paths, expand_inputs(gt), ("--pred", "--gt"), "prediction")
    lr_paths = None
    if lr:
        lr_paths = pair_by_name(pred_paths, expand_inputs(lr), ("--pred", "--lr"), "prediction")
    return pred_paths, gt_paths, lr_paths


def plan_reports(
    pairs: tuple[list[Path], list[Path], list[Path] | None],
    json_path: PathLike | None,
    csv_path: PathLike | None,
    figure: PathLike | None,
    *,
    tune: tuple[Any, Any] = (None, None),
) -> list[Path]:
    """Check the report files before any work: no input, no clash, nobody else's file.

    An existing file is replaced only when it is a report of the same kind that
    ``decrappify evaluate`` wrote (a rerun); any other file is refused.

    Parameters
    ----------
    pairs : tuple
        What :func:`pair_inputs` returned.
    json_path, csv_path, figure : path or None
        The reports asked for (one figure per image when there are several images).
    tune : tuple
        The ``tune_lr`` and ``tune_gt`` inputs.

    Returns
    -------
    list of Path
        The report files.

    Raises
    ------
    OutputError
        For a report that is an input, a folder, another report, or someone else's file.
    """
    from decrappify.io import expand_inputs
    from decrappify.io.outputs import OutputPlan

    plan = OutputPlan()
    for group in (*pairs, *(expand_inputs(t) if t else None for t in tune)):
        plan.add_inputs(group or [])
    if json_path:
        plan.add(json_path, "the --json report")
    if csv_path:
        plan.add(csv_path, "the --csv report")
    if figure:
        figure = Path(figure)
        gts = pairs[1]
        for gt in gts:
            name = Path(gt).name.split(".")[0]
            target = figure if len(gts) == 1 else figure.with_name(f"{figure.stem}-{name}.png")
            plan.add(target, f"the --figure of {Path(gt).name}")
    plan.check()
    for item in plan.outputs:
        _check_replaceable(item.path, item.what)
    return plan.paths()


def _check_replaceable(path: Path, what: str) -> None:
    """Refuse a report path that is a folder, or a file ``evaluate`` did not write."""
    if path.is_dir():
        raise OutputError(f"{path}: is a folder; {what} is a file, give its name")
    if not path.exists():
        return
    with open(path, "rb") as handle:
        head = handle.read(4096)
    if "--json" in what:
        try:
            ours = "mean" in json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, TypeError, OSError, UnicodeDecodeError):
            ours = False
    elif "--csv" in what:
        ours = head.startswith(b"image,method,")
    else:  # a figure: a PNG drawn by matplotlib
        ours = head.startswith(b"\x89PNG") and b"Matplotlib" in head
    if not ours:
        raise OutputError(
            f"{path}: already exists and is not a report of decrappify evaluate; choose "
            f"another name for {what} (an earlier report of evaluate would be replaced)"
        )


def _score_pairs(
    pairs: tuple[list[Path], list[Path], list[Path] | None],
    names: tuple[str, ...],
    tuned: dict[str, Any],
    grid: dict[str, Any],
) -> Generator[Progress, None, Scored]:
    """Score every pair; one bad pair fails alone (listed in ``failed``)."""
    from decrappify.io import read_image

    pred_paths, gt_paths, lr_paths = pairs
    scored = Scored()
    for i, (p, g) in enumerate(zip(pred_paths, gt_paths, strict=True)):
        try:  # one bad pair fails alone: the others are scored and the report written
            pred_img, gt_img = read_image(p), read_image(g)
            lr_img = read_image(lr_paths[i]) if lr_paths else None
            name = gt_img.name
            if name in scored.results or name in RESERVED_NAMES:
                name = f"{name}-{i}"
            events = iter_compare(
                pred_img,
                gt_img,  # the record: its pixel size turns the FRC resolution into a length
                lr_img,
                baselines=names,
                name=name,
                tuned=tuned,
                **grid,
            )
            while True:
                try:
                    event = next(events)
                except StopIteration as stop:
                    comparison = stop.value
                    break
                yield Progress(
                    phase=name, step=event.step, total=event.total, message=event.message
                )
        except DecrappifyError as err:
            scored.failed.append({"pred": str(p), "gt": str(g), "error": _with_hint(str(err))})
            continue
        scored.results[name] = comparison.result
        scored.warnings.extend(comparison.warnings)
        scored.notes.extend(f"{name}: {note}" for note in comparison.notes)
        scored.images[name] = (pred_img, gt_img, lr_img, comparison.grid["scale"])
    return scored


def _with_hint(message: str) -> str:
    """Add to a refusal of files that do not overlay the option of ``evaluate`` that helps."""
    if "does not overlay" not in message:
        return message
    if message.startswith("LR input"):
        return message + "; or pass --scale N (the LR → GT factor) to compare them by shape"
    return (
        message + "; or pass --crop to compare the region they share pixel by pixel, or "
        "--resize to resample the prediction onto the ground truth"
    )


@dataclass
class Scored:
    """What :func:`_score_pairs` found: results, images, failures, warnings and notes."""

    results: dict[str, Any] = field(default_factory=dict)
    images: dict[str, tuple[Any, Any, Any, int | None]] = field(default_factory=dict)
    failed: list[dict[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _write_reports(
    scored: Scored,
    json_path: PathLike | None,
    csv_path: PathLike | None,
    figure: PathLike | None,
    n_pairs: int,
) -> tuple[dict[str, Any], list[Path]]:
    """Write the JSON, CSV and figures; return the JSON document and the files written."""
    from decrappify.io import atomic_write_text
    from decrappify.metrics import comparison_figure, results_to_json, write_csv

    results, images = scored.results, scored.images
    doc = results_to_json(results)
    if scored.failed:
        doc["failed"] = scored.failed
    if scored.warnings:
        doc["warnings"] = scored.warnings
    written = []
    if json_path:
        text = json.dumps(doc, indent=2, allow_nan=False) + "\n"
        written.append(atomic_write_text(json_path, text))
    if csv_path:
        written.append(write_csv(results, csv_path))
    if figure:
        figure = Path(figure)
        for name, (pred_img, gt_img, lr_img, factor) in images.items():
            target = figure if n_pairs == 1 else figure.with_name(f"{figure.stem}-{name}.png")
            plane = gt_img.shape[0] // 2 if gt_img.ndim == 3 else None
            baseline, baseline_name = _figure_baseline(results[name], lr_img, gt_img, plane)
            written.append(
                comparison_figure(
                    None if lr_img is None else lr_img.data,
                    baseline,
                    pred_img.data,
                    gt_img.data,
                    path=target,
                    scale=factor,
                    plane=plane,
                    baseline_name=baseline_name,
                    title=name,
                )
            )
    return doc, written


def _figure_baseline(result: Any, lr: Any, gt: Any, plane: int | None) -> tuple[Any, str | None]:
    """Return the best-scoring baseline's plane on the GT grid, for the comparison figure."""
    from decrappify.metrics.baselines import parse_baseline

    if lr is None or not result.baselines or result.scale is None:
        return None, None
    best = max(result.baselines, key=lambda m: result.mean(m)["psnr_norm"])
    lr_plane = np.asarray(lr.data if plane is None else lr.data[plane])
    shape = (lr_plane.shape[0] * result.scale, lr_plane.shape[1] * result.scale)
    image = parse_baseline(best).apply(lr_plane, shape)
    gy, gx = gt.shape[-2:]
    return image[:gy, :gx], best


def evaluate(pred: Sequence[PathLike], gt: Sequence[PathLike], **kwargs: Any) -> EvaluationReport:
    """Run :func:`iter_evaluate` to the end.

    Parameters
    ----------
    pred, gt : sequence of path
        Predictions and ground truths, paired in order.
    **kwargs
        As :func:`iter_evaluate`.

    Returns
    -------
    EvaluationReport
        The report.
    """
    report = run_to_end(iter_evaluate(pred, gt, **kwargs))
    assert report is not None
    return report
