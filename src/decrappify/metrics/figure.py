"""The comparison figure: LR | baseline | prediction | GT crops, error maps and FRC curves.

matplotlib is imported inside :func:`comparison_figure` only and draws on its Agg canvas,
without touching pyplot's global state; the PNG is written atomically.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from decrappify.errors import InputError
from decrappify.io.atomic import atomic_write
from decrappify.io.image import Image
from decrappify.metrics.baselines import baseline_label, scale_for, upsample
from decrappify.metrics.core import (
    affine_fit,
    evaluate_pair,
    gt_range,
    shape_mismatch_message,
)
from decrappify.metrics.frc import FRCResult, frc
from decrappify.metrics.planes import as_plane
from decrappify.metrics.stack import PREDICTION
from decrappify.normalize import percentile_range

#: Percentiles of each image panel shown as black and white.
PANEL_PERCENTILES = (0.5, 99.5)


def _pick_plane(array: Any, plane: int | None, name: str) -> np.ndarray:
    data = array.data if isinstance(array, Image) else array
    if data.ndim == 3:
        index = data.shape[0] // 2 if plane is None else plane
        if not -data.shape[0] <= index < data.shape[0]:
            raise InputError(f"plane: {name} has {data.shape[0]} planes, got index {index}")
        data = data[index]
    return as_plane(data, name)


def comparison_figure(
    lr: Any,
    baseline: Any,
    pred: Any,
    gt: Any,
    *,
    path: str | os.PathLike[str],
    frc_curves: Mapping[str, FRCResult] | None = None,
    scale: int | None = None,
    plane: int | None = None,
    crop_size: int = 256,
    baseline_name: str | None = None,
    figsize: tuple[float, float] = (16.0, 8.0),
    dpi: int = 100,
    title: str | None = None,
) -> Path:
    """Draw LR | baseline | prediction | GT, their error maps and FRC curves to a PNG.

    Top row: central crops of the low-resolution input, the baseline, the prediction and
    the ground truth, covering the same field of view, each shown with its own contrast:
    grey levels from the crop's :data:`PANEL_PERCENTILES` (so that dim structure next
    to a few bright spots, common in fluorescence, stays visible).
    Bottom row: absolute error maps ``|baseline - GT|`` and ``|prediction - GT|`` on one
    colour scale, and the FRC curves with the threshold line.

    The error maps are in normalised units: the ground truth is percentile-normalised
    (0.1 / 99.9) and the prediction, the baseline and the low-resolution input (against
    the ground truth averaged over each input pixel) are mapped onto it by their
    least-squares affine fit, as for the normalised metrics. They thus show what
    ``psnr_norm`` / ``ssim_norm`` score, which the panel titles quote (computed on the
    whole plane).

    Parameters
    ----------
    lr : array-like or None
        The low-resolution input (2D or 3D), or None to leave its panel empty.
    baseline : array-like or None
        The baseline on the ground-truth grid, or None to interpolate it from ``lr``
        (bicubic).
    pred, gt : array-like
        Prediction and ground truth on the same grid (2D or 3D).
    path : path-like
        The PNG to write (atomically).
    frc_curves : mapping of str to FRCResult, optional
        Curves to plot, by label. Default: the FRC of the prediction and of the baseline
        against the ground truth. An empty mapping leaves the panel out.
    scale : int, optional
        Factor between ``lr`` and ``gt``; inferred when ``gt`` is an exact multiple.
    plane : int, optional
        Plane to show for 3D inputs (default: the middle one).
    crop_size : int
        Side of the central crop, in ground-truth pixels (rounded down to a multiple of
        ``scale`` and to the image size).
    baseline_name : str or None
        Label of the baseline (default: ``"bicubic"``, or ``"input"`` at scale 1).
    figsize, dpi : (float, float), int
        Figure size in inches and resolution: the PNG is ``figsize * dpi`` pixels.
    title : str, optional
        Figure title.

    Returns
    -------
    Path
        The written PNG.

    Raises
    ------
    InputError
        If the prediction, baseline and ground truth are not on the same grid or the
        scale cannot be inferred.
    OutputError
        If the PNG cannot be written.
    """
    gt_p = _pick_plane(gt, plane, "gt").astype(np.float64)
    pred_p = _pick_plane(pred, plane, "pred").astype(np.float64)
    lr_p = None if lr is None else _pick_plane(lr, plane, "lr").astype(np.float64)
    if pred_p.shape != gt_p.shape:
        raise InputError(shape_mismatch_message("pred", pred_p.shape, gt_p.shape))
    if lr_p is not None:
        scale = scale_for(lr_p.shape, gt_p.shape, scale)
    baseline_name = baseline_name or baseline_label(scale)
    base_p = _baseline_plane(baseline, lr_p, gt_p, scale=scale, plane=plane, name=baseline_name)
    if not isinstance(crop_size, int) or crop_size < 1:
        raise InputError(f"crop_size: expected a positive integer, got {crop_size!r}")

    crops, errors = _panels(
        lr_p, base_p, pred_p, gt_p, scale=scale or 1, crop_size=crop_size, name=baseline_name
    )
    metrics = {
        baseline_name: evaluate_pair(base_p, gt_p),
        PREDICTION: evaluate_pair(pred_p, gt_p),
    }
    if frc_curves is None:
        frc_curves = {PREDICTION: frc(pred_p, gt_p), baseline_name: frc(base_p, gt_p)}
    fig = _draw(crops, errors, metrics, frc_curves, figsize=figsize, dpi=dpi, title=title)
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi))


def _baseline_plane(
    baseline: Any,
    lr_p: np.ndarray | None,
    gt_p: np.ndarray,
    *,
    scale: int | None,
    plane: int | None,
    name: str,
) -> np.ndarray:
    """Return the baseline's plane on the ground-truth grid (without one: bicubic from lr)."""
    if baseline is not None:
        base_p = _pick_plane(baseline, plane, name).astype(np.float64)
    elif lr_p is None:
        raise InputError("--figure needs the low-res inputs (--lr) to draw the bicubic baseline")
    else:
        assert scale is not None
        base_p = upsample(lr_p, scale, "bicubic").astype(np.float64)
        base_p = base_p[: gt_p.shape[0], : gt_p.shape[1]]
    if base_p.shape != gt_p.shape:
        raise InputError(shape_mismatch_message(name, base_p.shape, gt_p.shape))
    return base_p


def _panels(
    lr_p: np.ndarray | None,
    base_p: np.ndarray,
    pred_p: np.ndarray,
    gt_p: np.ndarray,
    *,
    scale: int,
    crop_size: int,
    name: str,
) -> tuple[dict[str, np.ndarray | None], dict[str, np.ndarray]]:
    """Normalise the planes onto the ground truth and crop their central windows.

    Returns the top row's crops by title (the LR crop covers the same field of view) and
    the bottom row's error maps of the baseline (titled ``name``) and the prediction.
    """
    lo, hi = gt_range(gt_p, 0.1, 99.9)
    gt_n = (gt_p - lo) / (hi - lo)
    pred_n = _fit(pred_p, gt_n)
    base_n = _fit(base_p, gt_n)
    lr_n = None if lr_p is None else _fit_lr(lr_p, gt_n, scale)
    s = scale
    side = max(s, min(crop_size, *gt_p.shape) // s * s)
    y0 = (gt_p.shape[0] - side) // 2 // s * s
    x0 = (gt_p.shape[1] - side) // 2 // s * s
    window = (slice(y0, y0 + side), slice(x0, x0 + side))
    lr_window = (slice(y0 // s, (y0 + side) // s), slice(x0 // s, (x0 + side) // s))
    crops = {
        f"low resolution (×{s})": None if lr_n is None else lr_n[lr_window],
        name: base_n[window],
        PREDICTION: pred_n[window],
        "ground truth": gt_n[window],
    }
    errors = {
        name: np.abs(base_n - gt_n)[window],
        PREDICTION: np.abs(pred_n - gt_n)[window],
    }
    return crops, errors


def _fit(x: np.ndarray, target: np.ndarray) -> np.ndarray:
    a, b = affine_fit(x, target)
    return a * x + b


def _fit_lr(lr: np.ndarray, gt_n: np.ndarray, scale: int) -> np.ndarray:
    """Map the LR input onto the normalised GT, fitted against GT block means."""
    h = min(lr.shape[0], gt_n.shape[0] // scale)
    w = min(lr.shape[1], gt_n.shape[1] // scale)
    blocks = gt_n[: h * scale, : w * scale].reshape(h, scale, w, scale).mean(axis=(1, 3))
    a, b = affine_fit(lr[:h, :w], blocks)
    return a * lr + b


def _draw(
    crops: Mapping[str, np.ndarray | None],
    errors: Mapping[str, np.ndarray],
    metrics: Mapping[str, Mapping[str, float]],
    frc_curves: Mapping[str, FRCResult],
    *,
    figsize: tuple[float, float],
    dpi: int,
    title: str | None,
) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(2, 4)
    for col, (label, crop) in enumerate(crops.items()):
        ax = fig.add_subplot(grid[0, col])
        ax.set_xticks([])
        ax.set_yticks([])
        if crop is None:
            ax.text(0.5, 0.5, "no low-resolution input", ha="center", va="center")
            ax.set_title(label)
            continue
        lo, hi = percentile_range(crop, *PANEL_PERCENTILES)
        ax.imshow(crop, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
        ax.set_title(_panel_title(label, metrics.get(label)))
    vmax = max(float(np.percentile(e, 99.5)) for e in errors.values()) or 1.0
    error_axes = []
    image = None
    for col, (label, err) in enumerate(errors.items()):
        ax = fig.add_subplot(grid[1, col])
        image = ax.imshow(err, cmap="magma", vmin=0.0, vmax=vmax, interpolation="nearest")
        ax.set_title(f"|{label} − ground truth|")
        ax.set_xticks([])
        ax.set_yticks([])
        error_axes.append(ax)
    if image is not None:
        fig.colorbar(
            image,
            ax=error_axes,
            location="bottom",
            shrink=0.6,
            aspect=40,
            label="absolute error (normalised units)",
        )
    ax = fig.add_subplot(grid[1, 2:])
    _plot_frc(ax, frc_curves)
    if title:
        fig.suptitle(title)
    return fig


def _panel_title(label: str, values: Mapping[str, float] | None) -> str:
    if values is None:
        return label
    return f"{label}\nPSNR norm {values['psnr_norm']:.2f} dB, SSIM norm {values['ssim_norm']:.3f}"


def _plot_frc(ax: Any, curves: Mapping[str, FRCResult]) -> None:
    if not curves:
        ax.set_axis_off()
        return
    threshold = next(iter(curves.values())).threshold
    for label, curve in curves.items():
        (line,) = ax.plot(curve.frequencies, curve.correlation, label=_frc_label(label, curve))
        if curve.crossing_frequency is not None:
            ax.axvline(curve.crossing_frequency, color=line.get_color(), ls=":", lw=1)
    name = "1/7 threshold" if abs(threshold - 1 / 7) < 1e-9 else f"threshold {threshold:.3g}"
    ax.axhline(threshold, color="black", ls="--", lw=1, label=name)
    ax.set_xlim(0.0, max(float(c.frequencies.max()) for c in curves.values()))
    ax.set_ylim(-0.1, 1.05)
    ax.set_xlabel("spatial frequency (cycles/pixel)")
    ax.set_ylabel("Fourier ring correlation")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize="small")


#: Short forms of NGFF unit names for figure labels.
UNIT_SYMBOLS = {"nanometer": "nm", "micrometer": "µm", "millimeter": "mm", "angstrom": "Å"}


def _frc_label(label: str, curve: FRCResult) -> str:
    if curve.resolution_px is None:
        return f"{label} (above threshold)"
    text = f"{label} ({curve.resolution_px:.2f} px"
    if curve.resolution is not None:
        unit = UNIT_SYMBOLS.get(curve.unit or "", curve.unit or "units")
        text += f" = {curve.resolution:.4g} {unit}"
    return text + ")"
