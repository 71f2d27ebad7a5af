"""Evaluate: score predictions against ground truth and interpolation baselines."""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from decrappify.api.common import PathLike
from decrappify.errors import InputError
from decrappify.events import Progress, run_to_end

BASELINES = ("nearest", "bilinear", "bicubic")


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
    """

    results: dict[str, Any]
    json: dict[str, Any]
    table: Any
    written: list[Path] = field(default_factory=list)


def parse_baselines(text: str | Sequence[str] | None) -> tuple[str, ...]:
    """Parse ``"bicubic,bilinear"`` (or a list) into validated baseline names.

    Parameters
    ----------
    text : str, sequence of str or None
        Comma-separated names, a sequence, or None/empty for no baselines.

    Returns
    -------
    tuple of str
        The names, in the order given.
    """
    if not text:
        return ()
    items = text.split(",") if isinstance(text, str) else list(text)
    names = tuple(dict.fromkeys(i.strip().lower() for i in items if i.strip()))
    unknown = [n for n in names if n not in BASELINES]
    if unknown:
        raise InputError(
            f"baselines: unknown {', '.join(unknown)}; expected any of {', '.join(BASELINES)}"
        )
    return names


def _paired(label: str, paths: Sequence[Path], n: int) -> Sequence[Path]:
    if len(paths) != n:
        raise InputError(
            f"--{label}: got {len(paths)} images for {n} predictions; give one per prediction, "
            "in the same order"
        )
    return paths


def iter_evaluate(
    pred: Sequence[PathLike],
    gt: Sequence[PathLike],
    lr: Sequence[PathLike] | None = None,
    *,
    baselines: str | Sequence[str] | None = ("bicubic",),
    json_path: PathLike | None = None,
    csv_path: PathLike | None = None,
    figure: PathLike | None = None,
    crop: bool = False,
    resize: bool = False,
    scale: int | None = None,
) -> Generator[Progress, None, EvaluationReport]:
    """Score each prediction against its ground truth (and baselines from its LR input).

    Parameters
    ----------
    pred, gt : sequence of path
        Predictions and ground truths, paired in order (files, folders or globs).
    lr : sequence of path or None
        The low-resolution inputs, paired in order, for the interpolation baselines.
    baselines : str or sequence of str or None
        ``"nearest"``, ``"bilinear"``, ``"bicubic"`` (comma-separated in a string).
    json_path, csv_path : path or None
        Where to write the JSON and CSV reports.
    figure : path or None
        Comparison figure (LR | baseline | prediction | GT, error maps, FRC). With several
        images, one figure per image named ``<stem>-<image>.png``.
    crop, resize : bool
        How to handle grids that differ (see :func:`decrappify.metrics.evaluate_stack`).
        When neither is given (nor ``scale``) and every image records its pixel size
        (OME-Zarr, OME-TIFF), the images are put on one grid from where they lie in the
        world, as napari's Compare widget does
        (:func:`decrappify.metrics.alignment.plan_comparison`): the same grid, a common
        region, or a prediction resampled onto the ground truth's grid.
    scale : int or None
        LR → GT factor, inferred from the pixel sizes or the shapes when None.

    Yields
    ------
    Progress
        One event per plane scored; ``phase`` is the image name.

    Returns
    -------
    EvaluationReport
        Results, the JSON document, the table and the files written.
    """
    from decrappify.io import expand_inputs, read_image
    from decrappify.metrics import (
        comparison_figure,
        format_table,
        iter_evaluate_stack,
        results_to_json,
        write_csv,
    )
    from decrappify.metrics.alignment import plan_comparison

    names = parse_baselines(baselines)
    pred_paths = expand_inputs(pred)
    gt_paths = _paired("gt", expand_inputs(gt), len(pred_paths))
    lr_paths = _paired("lr", expand_inputs(lr), len(pred_paths)) if lr else None
    results: dict[str, Any] = {}
    images: dict[str, tuple[Any, Any, Any, int | None]] = {}
    for i, (p, g) in enumerate(zip(pred_paths, gt_paths, strict=True)):
        pred_img, gt_img = read_image(p), read_image(g)
        lr_img = read_image(lr_paths[i]) if lr_paths else None
        name = gt_img.name if gt_img.name not in results else f"{gt_img.name}-{i}"
        grid: dict[str, Any] = {"crop": crop, "resize": resize, "scale": scale}
        placed = all(im.pixel_size is not None for im in (pred_img, gt_img, lr_img) if im)
        if placed and not (crop or resize or scale):
            grid = plan_comparison(pred_img, gt_img, lr_img).evaluate_kwargs()
        events = iter_evaluate_stack(
            pred_img.data,
            gt_img,  # the record: its pixel size turns the FRC resolution into a length
            None if lr_img is None else lr_img.data,
            baselines=names,
            name=name,
            **grid,
        )
        while True:
            try:
                event = next(events)
            except StopIteration as stop:
                results[name] = stop.value
                break
            yield Progress(phase=name, step=event.step, total=event.total, message=event.message)
        images[name] = (pred_img, gt_img, lr_img, grid["scale"])
    doc = results_to_json(results, json_path)
    written = [Path(json_path)] if json_path else []
    if csv_path:
        written.append(write_csv(results, csv_path))
    if figure:
        figure = Path(figure)
        for name, (pred_img, gt_img, lr_img, factor) in images.items():
            target = figure if len(images) == 1 else figure.with_name(f"{figure.stem}-{name}.png")
            plane = gt_img.shape[0] // 2 if gt_img.ndim == 3 else None
            written.append(
                comparison_figure(
                    None if lr_img is None else lr_img.data,
                    None,
                    pred_img.data,
                    gt_img.data,
                    path=target,
                    scale=factor,
                    plane=plane,
                    title=name,
                )
            )
    return EvaluationReport(results=results, json=doc, table=format_table(results), written=written)


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
