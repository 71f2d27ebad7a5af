"""The work behind the widgets, as generators of progress events (no Qt here).

Each job takes :class:`decrappify.io.Image` records built from layers, calls the core
(:mod:`decrappify.crappify`, :mod:`decrappify.metrics`, :mod:`decrappify.io`) and
returns what the widget shows. The widgets run them in a thread worker
(:mod:`decrappify._napari._runner`); tests and scripts can run them with
:func:`decrappify.events.run_to_end`.
"""

from __future__ import annotations

import atexit
import itertools
import os
import re
import shutil
import tempfile
from collections.abc import Generator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from decrappify.errors import InputError
from decrappify.events import Progress
from decrappify.io import Image

#: Results up to this many bytes are computed into memory; larger ones go to OME-Zarr.
MEMORY_LIMIT = 1 << 30
#: LR chunk side of the preview: small, so only the visible region is computed.
PREVIEW_CHUNK = 128
#: Largest preview side in LR pixels (a zoomed-out view previews its central part).
PREVIEW_MAX = 2048
#: Temporary folders made for large results in this session, removed at exit.
_TEMP_DIRS: list[Path] = []


# ----------------------------------------------------------------------------- compute


def iter_compute(
    data: Any, *, phase: str = "compute", batch: int | None = None
) -> Generator[Progress, None, np.ndarray]:
    """Compute a lazy array into a numpy array, a few chunks at a time.

    Parameters
    ----------
    data : numpy.ndarray or dask.array.Array
        What to compute (numpy is returned as is).
    phase : str
        ``phase`` of the progress events.
    batch : int or None
        Chunks computed together (in parallel by dask's threads); default the number
        of CPUs, at most 8. Memory is the result plus ``batch`` chunks.

    Yields
    ------
    Progress
        One event per batch: ``step`` chunks done out of ``total``.

    Returns
    -------
    numpy.ndarray
        The computed array.
    """
    if isinstance(data, np.ndarray):
        return data
    import dask
    from dask.array.core import slices_from_chunks

    out = np.empty(data.shape, dtype=data.dtype)
    regions = slices_from_chunks(data.chunks)
    batch = batch or max(1, min(os.cpu_count() or 1, 8))
    total = len(regions)
    done = 0
    for start in range(0, total, batch):
        group = regions[start : start + batch]
        blocks = dask.compute(*(data[r] for r in group), scheduler="threads")
        for region, block in zip(group, blocks, strict=True):
            out[region] = block
        done += len(group)
        yield Progress(phase=phase, step=done, total=total, message=f"block {done}/{total}")
    return out


def nbytes(image: Image) -> int:
    """Bytes the pixels of ``image`` take in memory.

    Parameters
    ----------
    image : Image
        The record.

    Returns
    -------
    int
        ``prod(shape) * itemsize``.
    """
    return int(np.prod(image.shape, dtype=np.int64)) * image.dtype.itemsize


# ----------------------------------------------------------------------------- outputs


def safe_name(name: str) -> str:
    """A file-name-safe version of a layer name.

    Parameters
    ----------
    name : str
        The layer name.

    Returns
    -------
    str
        Letters, digits, ``-``, ``_`` and ``.`` kept, runs of anything else as ``_``.
    """
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")
    return cleaned or "image"


def unique_path(folder: Path, stem: str, suffix: str = ".zarr") -> Path:
    """``folder/stem.zarr``, or ``stem_2.zarr``, ``stem_3.zarr`` ... if it exists.

    Parameters
    ----------
    folder : Path
        The folder.
    stem : str
        The name without suffix.
    suffix : str
        The suffix.

    Returns
    -------
    Path
        A path that does not exist yet.
    """
    for index in itertools.count(1):
        name = f"{stem}{suffix}" if index == 1 else f"{stem}_{index}{suffix}"
        path = folder / name
        if not os.path.lexists(path):
            return path
    raise AssertionError("unreachable")  # pragma: no cover


def session_temp_dir() -> Path:
    """A temporary folder for large results, removed when Python exits.

    Returns
    -------
    Path
        A new folder under the system's temporary directory.
    """
    path = Path(tempfile.mkdtemp(prefix="decrappify-napari-"))
    if not _TEMP_DIRS:
        atexit.register(_remove_temp_dirs)
    _TEMP_DIRS.append(path)
    return path


def _remove_temp_dirs() -> None:
    for path in _TEMP_DIRS:
        shutil.rmtree(path, ignore_errors=True)
    _TEMP_DIRS.clear()


# ----------------------------------------------------------------------------- crappify


def crappify_lazy(image: Image, config: Any, seed: int, *, chunks: Any = None) -> Image:
    """The lazy crappified record of ``image`` (:func:`decrappify.crappify.crappify_image`).

    Parameters
    ----------
    image : Image
        The HR record.
    config : CrappifyConfig
        The crappifier.
    seed : int
        The seed.
    chunks : int or tuple or None
        LR chunks; the values do not depend on them.

    Returns
    -------
    Image
        Lazy LR record (pixel size times the scale, centred on the HR blocks).
    """
    from decrappify.crappify import crappify_image

    return crappify_image(image, config, seed=seed, chunks=chunks)


@dataclass(frozen=True)
class Preview:
    """A crappified region of one plane.

    Parameters
    ----------
    data : numpy.ndarray
        The LR pixels, 2D (or 3D with one plane for a stack).
    image : Image
        Record placing ``data`` in the world (pixel size and translate of the region).
    region : tuple of slice
        The region of the full LR result it equals.
    """

    data: np.ndarray
    image: Image
    region: tuple[slice, ...]


def iter_crappify_preview(
    image: Image,
    config: Any,
    seed: int,
    *,
    box: tuple[tuple[float, float], tuple[float, float]],
    plane: int = 0,
) -> Generator[Progress, None, Preview]:
    """Crappify only the LR pixels over ``box`` of one plane (at most 2048 x 2048).

    The lazy crappifier gives the same values whatever the chunks, so the preview
    equals the same region of the full result; small chunks (:data:`PREVIEW_CHUNK`)
    keep the work near the region.

    Parameters
    ----------
    image : Image
        The HR record.
    config : CrappifyConfig
        The crappifier.
    seed : int
        The seed.
    box : ((y0, y1), (x0, x1))
        The visible region in HR data coordinates.
    plane : int
        Plane of a stack.

    Yields
    ------
    Progress
        ``phase="preview"``, one event per computed batch of chunks.

    Returns
    -------
    Preview
        The pixels and their placement.

    Raises
    ------
    InputError
        When the box does not meet the image.
    """
    from decrappify._napari._alignment import lr_region

    yield Progress(phase="preview", step=0, total=None, message="intensity range")
    lr = crappify_lazy(image, config, seed, chunks=PREVIEW_CHUNK)
    ys, xs = (_central(s, PREVIEW_MAX) for s in lr_region(box, config.scale, lr.shape[-2:]))
    if ys.stop <= ys.start or xs.stop <= xs.start:
        raise InputError(f"preview: layer {image.source!r} is not in view; pan to it first")
    region: tuple[slice, ...] = (ys, xs) if lr.ndim == 2 else (slice(plane, plane + 1), ys, xs)
    data = yield from iter_compute(lr.data[region], phase="preview")
    starts = [r.start for r in region]
    translate = tuple(
        t + start * s for t, start, s in zip(_origin(lr), starts, lr.scale, strict=True)
    )
    placed = lr.with_data(data, translate=translate)
    return Preview(data=data, image=placed, region=region)


def iter_crappify_layer(
    image: Image,
    config: Any,
    seed: int,
    *,
    out_dir: str | Path | None = None,
    memory_limit: int = MEMORY_LIMIT,
    name: str = "image",
) -> Generator[Progress, None, Image]:
    """Crappify a whole image, into memory when small, else into an OME-Zarr store.

    Parameters
    ----------
    image : Image
        The HR record (numpy or dask).
    config : CrappifyConfig
        The crappifier.
    seed : int
        The seed.
    out_dir : path or None
        Write the result to ``out_dir/<name>_crappified.zarr`` (a new name if taken)
        and return it lazily. None: compute into memory when the result takes at most
        ``memory_limit`` bytes, else write to a temporary folder removed at exit.
    memory_limit : int
        Largest in-memory result, in bytes.
    name : str
        Stem of the output store.

    Yields
    ------
    Progress
        ``phase="crappify"`` (in memory) or ``"write"`` (OME-Zarr), one per block.

    Returns
    -------
    Image
        The LR record: numpy in memory, or lazy from the written store. Closing the
        generator early (Cancel) leaves no store behind.
    """
    from decrappify.io import iter_write_image, read_image

    yield Progress(phase="crappify", step=0, total=None, message="intensity range")
    lr = crappify_lazy(image, config, seed)
    if out_dir is None and nbytes(lr) <= memory_limit:
        data = yield from iter_compute(lr.data, phase="crappify")
        return lr.with_data(data)
    folder = Path(out_dir) if out_dir is not None else session_temp_dir()
    folder.mkdir(parents=True, exist_ok=True)
    target = unique_path(folder, f"{safe_name(name)}_crappified")
    # the layer name is no path: keep it out of the writer's input-overlap check
    written = yield from iter_write_image(replace(lr, source=None), target)
    stored = read_image(written)
    return lr.with_data(stored.data, source=str(written))


def _central(region: slice, size: int) -> slice:
    """The central ``size`` indices of ``region`` (all of it when shorter)."""
    extra = region.stop - region.start - size
    if extra <= 0:
        return region
    start = region.start + extra // 2
    return slice(start, start + size)


def _origin(image: Image) -> tuple[float, ...]:
    return tuple(float(t) for t in (image.translate or (0.0,) * image.ndim))


# ----------------------------------------------------------------------------- compare


@dataclass(frozen=True)
class Comparison:
    """What the Compare widget shows: per-plane metrics and two lazy layers.

    Parameters
    ----------
    result : StackResult
        Per-plane metrics of the prediction and the baselines.
    plan : ComparePlan
        How the layers were put on one grid.
    error : Image
        Lazy ``|a * pred + b - g|`` per plane on the ground-truth grid: the absolute
        error after the affine match, in units of the ground truth's percentile range
        (what ``psnr_norm`` averages).
    error_limits : (float, float)
        Contrast limits for ``error``: 0 and its 99.5th percentile on the current plane.
    baseline : Image or None
        Lazy bicubic interpolation of the LR input on the ground-truth grid.
    """

    result: Any
    plan: Any
    error: Image
    error_limits: tuple[float, float]
    baseline: Image | None


def iter_compare(
    pred: Image,
    gt: Image,
    lr: Image | None = None,
    *,
    plane: int = 0,
    name: str | None = None,
) -> Generator[Progress, None, Comparison]:
    """Score a prediction against its ground truth, the current plane first.

    Parameters
    ----------
    pred, gt : Image
        Prediction and ground truth (2D or 3D, lazy or not).
    lr : Image or None
        LR input, for the bicubic baseline.
    plane : int
        The plane on screen, scored first so that its row appears at once.
    name : str or None
        Name of the prediction in reports.

    Yields
    ------
    Progress
        For stacks, first ``phase="current slice"`` with ``info={"plane": k,
        "result": StackResult}`` (that plane only); then ``phase="evaluate"``, one event
        per plane with its prediction metrics.

    Returns
    -------
    Comparison
        Metrics and the lazy error and baseline images.

    Raises
    ------
    InputError
        When the layers do not lie on compatible grids (see
        :func:`~decrappify._napari._alignment.plan_comparison`) or a plane cannot be
        scored.
    """
    from decrappify._napari._alignment import in_units_of, plan_comparison
    from decrappify.metrics import evaluate_stack, iter_evaluate_stack
    from decrappify.metrics.baselines import baseline_label

    plan = plan_comparison(pred, gt, lr)
    lr = in_units_of(lr, gt) if lr is not None else None
    # at scale 1 the baseline is the input itself (already a layer: none is added)
    kwargs = {**plan.evaluate_kwargs(), "baselines": (baseline_label(plan.scale),)}
    name = name or pred.source
    if gt.ndim == 3 and plan.n_planes > 1:
        one = slice(plane, plane + 1)
        single = evaluate_stack(
            pred.data[one],
            gt.data[one],
            None if lr is None else lr.data[one],
            name=name,
            **kwargs,
        )
        yield Progress(
            phase="current slice",
            step=0,
            total=plan.n_planes,
            message=f"plane {plane + 1}/{plan.n_planes}",
            metrics=single.slice_metrics(0),
            info={"plane": plane, "result": single},
        )
    result = yield from iter_evaluate_stack(pred, gt, lr, name=name, **kwargs)
    error = error_image(pred, gt, plan)
    shown = error.data[plane] if error.ndim == 3 else error.data
    high = float(np.percentile(np.asarray(shown.compute()), 99.5))
    baseline = None if lr is None or plan.scale == 1 else baseline_image(lr, gt, plan)
    return Comparison(
        result=result,
        plan=plan,
        error=error,
        error_limits=(0.0, high if high > 0 else 1.0),
        baseline=baseline,
    )


def error_plane(
    pred: np.ndarray, gt: np.ndarray, *, norm_low: float = 0.1, norm_high: float = 99.9
) -> np.ndarray:
    """Absolute error of one plane after the affine match, in normalised units.

    Parameters
    ----------
    pred : numpy.ndarray
        Prediction plane on the ground-truth grid (resampled bicubically if its shape
        differs; cropped to the common top-left region if larger).
    gt : numpy.ndarray
        Ground-truth plane.
    norm_low, norm_high : float
        Ground-truth percentiles mapped to 0 and 1.

    Returns
    -------
    numpy.ndarray
        float32 ``|normalize_minmse(pred, g) - g|`` with ``g`` the percentile-normalised
        ground truth (a constant ground truth is shifted to 0 instead).
    """
    from decrappify.metrics import normalize_minmse, resize_plane
    from decrappify.metrics.core import gt_range

    h, w = gt.shape
    if pred.shape != gt.shape:
        if pred.shape[0] >= h and pred.shape[1] >= w:
            pred = pred[:h, :w]
        else:
            pred = resize_plane(pred, (h, w), 3)
    g64 = np.asarray(gt, dtype=np.float64)
    try:
        lo, hi = gt_range(g64, norm_low, norm_high)
    except InputError:
        lo, hi = float(g64.min()), float(g64.min()) + 1.0
    g = (g64 - lo) / (hi - lo)
    p = normalize_minmse(np.asarray(pred, dtype=np.float64), g)
    return np.abs(p - g).astype(np.float32)


def error_image(pred: Image, gt: Image, plan: Any) -> Image:
    """Lazy per-plane :func:`error_plane` of a prediction, on the ground-truth grid.

    Parameters
    ----------
    pred, gt : Image
        Prediction and ground truth.
    plan : ComparePlan
        How they are aligned (``crop``: the common top-left region).

    Returns
    -------
    Image
        float32 dask record with the ground truth's pixel size and translate.
    """
    gt_data = gt.data
    if plan.mode == "crop":
        h = min(pred.shape[-2], gt.shape[-2])
        w = min(pred.shape[-1], gt.shape[-1])
        gt_data = gt_data[..., :h, :w]
    shape = tuple(int(s) for s in gt_data.shape[-2:])
    data = _per_plane(error_plane, shape, pred.data, gt_data)
    return gt.with_data(data, source=f"{pred.source} error")


def baseline_image(lr: Image, gt: Image, plan: Any, method: str = "bicubic") -> Image:
    """Lazy interpolation baseline of the LR input, placed on the ground-truth grid.

    Parameters
    ----------
    lr : Image
        The LR input, in the ground truth's units.
    gt : Image
        The ground truth.
    plan : ComparePlan
        With an integer ``scale`` the LR is upsampled by it (pixel-centre convention of
        a downsampling); in ``resize`` mode it is resampled onto the ground-truth grid.
    method : str
        ``"nearest"``, ``"bilinear"`` or ``"bicubic"``.

    Returns
    -------
    Image
        float32 dask record.
    """
    from decrappify.metrics import METHOD_ORDERS, resize_plane

    order = METHOD_ORDERS[method]
    if plan.mode == "resize" or plan.scale is None:
        shape = tuple(int(s) for s in gt.shape[-2:])
        data = _per_plane(lambda plane: resize_plane(plane, shape, order), shape, lr.data)
        return gt.with_data(data, source=f"{lr.source} {method}")
    s = int(plan.scale)
    shape = (lr.shape[-2] * s, lr.shape[-1] * s)
    data = _per_plane(lambda plane: resize_plane(plane, shape, order), shape, lr.data)
    return lr.with_data(data, yx_factor=1 / s, source=f"{lr.source} {method}")


def _per_plane(func: Any, shape: tuple[int, ...], *arrays: Any) -> Any:
    """Lazy ``func(*planes)`` for each plane of 2D/3D arrays: one dask task per plane."""
    import dask
    import dask.array as da

    def task(*parts: Any) -> np.ndarray:
        return func(*(np.asarray(p) for p in parts))

    first = arrays[0]
    if first.ndim == 2:
        return da.from_delayed(dask.delayed(task)(*arrays), shape=shape, dtype=np.float32)
    planes = [
        da.from_delayed(dask.delayed(task)(*(a[i] for a in arrays)), shape=shape, dtype=np.float32)
        for i in range(first.shape[0])
    ]
    return da.stack(planes)


# ----------------------------------------------------------------------------- models

#: Environment variable naming the folder of decrappify's napari settings (tests, portable
#: installs); default: the platform's user config folder.
CONFIG_DIR_ENV = "DECRAPPIFY_CONFIG_DIR"
#: File of the recent models list, in :func:`user_config_dir`.
RECENT_MODELS_NAME = "recent_models.json"
#: Most recent models remembered.
MAX_RECENT_MODELS = 10
#: The best generator inside a training run folder (``decrappify.train.run.MODEL_NAME``).
RUN_MODEL_NAME = "model"
#: Largest preview side in HR pixels (the visible region's centre when zoomed out).
PREDICT_PREVIEW_MAX = 1024


def user_config_dir() -> Path:
    """The folder of decrappify's napari settings (not created here).

    Returns
    -------
    Path
        ``$DECRAPPIFY_CONFIG_DIR`` when set, else the platform's user config folder
        (``~/.config/decrappify`` on Linux).
    """
    override = os.environ.get(CONFIG_DIR_ENV)
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_config_dir("decrappify", appauthor=False))


def _recent_file(folder: str | Path | None) -> Path:
    return Path(folder if folder is not None else user_config_dir()) / RECENT_MODELS_NAME


def recent_models(folder: str | Path | None = None) -> list[Path]:
    """Models used or trained recently, most recent first (those that still exist).

    Parameters
    ----------
    folder : path or None
        Settings folder (default :func:`user_config_dir`).

    Returns
    -------
    list of Path
        Model folders and ``.safetensors`` files; an unreadable list is empty.
    """
    import json

    try:
        entries = json.loads(_recent_file(folder).read_text(encoding="utf-8")).get("models", [])
    except (OSError, ValueError, AttributeError):
        return []
    paths = [Path(p) for p in entries if isinstance(p, str)]
    return [p for p in paths if p.exists()][:MAX_RECENT_MODELS]


def remember_model(path: str | Path, folder: str | Path | None = None) -> list[Path]:
    """Put a model first in the recent models list (written atomically).

    Parameters
    ----------
    path : path
        The model folder or file.
    folder : path or None
        Settings folder (default :func:`user_config_dir`).

    Returns
    -------
    list of Path
        The new list. A list that cannot be written is left as it was (logged, the
        list is a convenience).
    """
    import json
    import logging

    from decrappify.io import atomic_write_text

    model = Path(path).expanduser().resolve()
    models = [model, *(p for p in recent_models(folder) if p.resolve() != model)]
    models = models[:MAX_RECENT_MODELS]
    target = _recent_file(folder)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(target, json.dumps({"models": [str(p) for p in models]}, indent=1))
    except OSError as err:
        logging.getLogger("decrappify").warning("%s: cannot save recent models (%s)", target, err)
    return models


def model_summary(info: Any) -> str:
    """A few lines about a model for the Super-resolve widget.

    Parameters
    ----------
    info : ModelInfo
        The metadata (:func:`decrappify.api.model_info`).

    Returns
    -------
    str
        Scale and input planes, network, normalisation, validation metrics against
        bicubic, and whether its training run had finished.
    """
    g = info.generator
    norm = info.normalization
    frames = "2D" if g.n_frames == 1 else f"2.5D ({g.n_frames} input planes)"
    lines = [
        f"×{g.scale} super-resolution, {frames}"
        if g.scale > 1
        else f"restoration on the same grid (×1), {frames}",
        f"{g.encoder.value} U-Net, normalisation: {norm.method} {norm.low:g}–{norm.high:g} %",
    ]
    metrics = info.metrics
    parts = []
    for key, label, fmt in (("psnr", "PSNR", "{:.2f} dB"), ("ssim", "SSIM", "{:.3f}")):
        if key in metrics:
            text = f"{label} {fmt.format(metrics[key])}"
            if f"bicubic_{key}" in metrics:
                plain = "input" if g.scale == 1 else "bicubic"  # the same key at scale 1
                text += f" ({plain} {fmt.format(metrics[f'bicubic_{key}'])})"
            parts.append(text)
    lines.append("validation: " + (", ".join(parts) if parts else "none recorded"))
    finished = info.training.get("finished") if info.training else None
    if finished is False:
        lines.append("training: not finished (generator after pretraining)")
    return "\n".join(lines)


def check_model_scale(info: Any, scale: int | None, name: str) -> None:
    """Refuse a model whose factor is not the one expected for an image.

    Parameters
    ----------
    info : ModelInfo
        The model's metadata.
    scale : int or None
        Expected factor (None: any).
    name : str
        The model, for the message.

    Raises
    ------
    InputError
        ``model m upsamples ×4, but scale 2 was asked``.
    """
    if scale is not None and info.generator.scale != scale:
        raise InputError(
            f"model {name} upsamples ×{info.generator.scale}, but scale {scale} was asked"
        )


def visible_rect(
    box: tuple[tuple[float, float], tuple[float, float]],
    shape: tuple[int, ...],
    max_side: int,
) -> tuple[tuple[int, int], tuple[int, int]]:
    """The pixels of an image under a visible box, at most ``max_side`` around its centre.

    Parameters
    ----------
    box : ((y0, y1), (x0, x1))
        Continuous data coordinates (pixel centres at integers).
    shape : tuple of int
        The image shape (its last two axes are used).
    max_side : int
        Largest side in pixels.

    Returns
    -------
    ((y0, y1), (x0, x1))
        Pixel ranges clipped to the image; empty (``y1 <= y0``) when the box misses it.
    """
    out = []
    for (low, high), size in zip(box, shape[-2:], strict=True):
        start = max(0, int(np.floor(low + 0.5)))
        stop = min(int(size), int(np.ceil(high + 0.5)))
        region = _central(slice(start, max(start, stop)), max_side)
        out.append((region.start, region.stop))
    return out[0], out[1]


def _model_info(model: str | Path) -> Any:
    from decrappify.api import model_info

    return model_info(model)


def predict_plan(
    model: str | Path, image: Image, *, scale: int | None = None
) -> tuple[Any, tuple[int, ...]]:
    """Read a model's metadata and check it against an image before any work.

    Parameters
    ----------
    model : path
        Model folder or ``.safetensors`` file.
    image : Image
        The LR image.
    scale : int or None
        Expected factor (None: any).

    Returns
    -------
    info : ModelInfo
        The metadata.
    out_shape : tuple of int
        Shape of the result.

    Raises
    ------
    ModelFileError
        For a missing or unreadable model.
    InputError
        For another factor than ``scale`` (the API refuses a 2.5D model on a 2D image
        when it starts).
    """
    info = _model_info(model)
    name = Path(model).name
    check_model_scale(info, scale, name)
    g = info.generator
    out_shape = (*image.shape[:-2], image.shape[-2] * g.scale, image.shape[-1] * g.scale)
    return info, tuple(int(n) for n in out_shape)


def iter_predict_layer(
    model: str | Path,
    image: Image,
    *,
    out_dir: str | Path | None = None,
    memory_limit: int = MEMORY_LIMIT,
    name: str = "image",
    scale: int | None = None,
    **settings: Any,
) -> Generator[Progress, None, Image]:
    """Super-resolve a whole image, into memory when small, else into an OME-Zarr store.

    Parameters
    ----------
    model : path
        Model folder or ``.safetensors`` file.
    image : Image
        The LR record (numpy or dask; a dask record is read block by block).
    out_dir : path or None
        Write the result to ``out_dir/<name>_x<scale>.zarr`` (a new name if taken) and
        return it lazily. None: compute into memory when the result takes at most
        ``memory_limit`` bytes, else write to a temporary folder removed at exit.
    memory_limit : int
        Largest in-memory result, in bytes.
    name : str
        Stem of the output store.
    scale : int or None
        Refuse a model with another factor.
    **settings
        ``tile``, ``overlap``, ``batch``, ``device``, ``out_dtype`` of
        :func:`decrappify.api.iter_predict_image`.

    Yields
    ------
    Progress
        ``phase="predict"``, one per block (and the pyramid of a store).

    Returns
    -------
    Image
        The HR record placed over the input (pixel size / factor, translate): numpy in
        memory, or lazy from the written store. Closing the generator early (Cancel)
        leaves no store behind.
    """
    from decrappify.api import iter_predict_image

    yield Progress(phase="predict", step=0, total=None, message="reading the model")
    info, out_shape = predict_plan(model, image, scale=scale)
    factor = info.generator.scale
    dtype = np.dtype(settings.get("out_dtype") or image.dtype)
    out_nbytes = int(np.prod(out_shape, dtype=np.int64)) * dtype.itemsize
    if out_dir is None and out_nbytes <= memory_limit:
        result = yield from iter_predict_image(str(model), image, None, **settings)
        return image.with_data(result.image.data, yx_factor=1.0 / factor)
    folder = Path(out_dir) if out_dir is not None else session_temp_dir()
    folder.mkdir(parents=True, exist_ok=True)
    target = unique_path(folder, f"{safe_name(name)}_x{factor}")
    # the layer name is no path: keep it out of the writer's input-overlap check
    result = yield from iter_predict_image(
        str(model), replace(image, source=None), target, **settings
    )
    return image.with_data(result.image.data, yx_factor=1.0 / factor, source=str(result.path))


def iter_predict_preview(
    model: str | Path,
    image: Image,
    *,
    box: tuple[tuple[float, float], tuple[float, float]],
    plane: int = 0,
    scale: int | None = None,
    max_side: int = PREDICT_PREVIEW_MAX,
    **settings: Any,
) -> Generator[Progress, None, Image]:
    """Super-resolve only the visible region of one plane (:func:`decrappify.api.predict_region`).

    Parameters
    ----------
    model : path
        Model folder or ``.safetensors`` file.
    image : Image
        The LR record.
    box : ((y0, y1), (x0, x1))
        The visible region in LR data coordinates.
    plane : int
        Plane of a stack.
    scale : int or None
        Refuse a model with another factor.
    max_side : int
        Largest preview side in HR pixels (the centre of a zoomed-out view).
    **settings
        ``tile``, ``overlap``, ``batch``, ``device``, ``out_dtype``.

    Yields
    ------
    Progress
        ``phase="preview"`` before the model runs.

    Returns
    -------
    Image
        The HR pixels of the region with the input's axes (one plane for a stack),
        placed over the region; equal to the same region of a full run.

    Raises
    ------
    InputError
        When the region is not in view, or the model does not fit the image.
    """
    from decrappify.api import predict_region

    yield Progress(phase="preview", step=0, total=None, message="reading the model")
    info, _ = predict_plan(model, image, scale=scale)
    rows, cols = visible_rect(box, image.shape, max(1, max_side // info.generator.scale))
    if rows[1] <= rows[0] or cols[1] <= cols[0]:
        raise InputError(f"preview: layer {image.source!r} is not in view; pan to it first")
    yield Progress(
        phase="preview",
        step=0,
        total=None,
        message=f"{rows[1] - rows[0]}×{cols[1] - cols[0]} LR pixels",
    )
    stack = image.ndim == 3
    out = predict_region(
        str(model), image, (rows, cols), plane=plane if stack else None, **settings
    )
    if not stack:
        return replace(out, source=image.source)
    z, tz = image.scale[0], (image.translate or (0.0,) * image.ndim)[0]
    return Image(
        out.data[None],
        axes=image.axes,
        pixel_size=(z, *out.scale) if image.pixel_size is not None else (1.0, *out.scale),
        units=image.units,
        source=image.source,
        translate=(tz + plane * z, *(out.translate or (0.0, 0.0))),
    )


# ----------------------------------------------------------------------------- training


def parse_overrides(text: str) -> dict[str, Any]:
    """Read ``key=value`` settings separated by ``;`` or new lines (values as YAML).

    Parameters
    ----------
    text : str
        ``"gan.max_steps=0; data.patch_size=96"``.

    Returns
    -------
    dict
        Dotted key to value (numbers, lists, ``null`` as YAML reads them).

    Raises
    ------
    InputError
        For an item without ``=`` or a value YAML cannot read.
    """
    import yaml

    out: dict[str, Any] = {}
    for item in re.split(r"[;\n]+", text):
        item = item.strip()
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"overrides: expected KEY=VALUE, e.g. gan.max_steps=0 (got {item!r})")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise InputError(f"overrides: {key.strip()}: cannot read the value {value!r}") from None
    return out


def run_model(run_dir: str | Path) -> Path | None:
    """The model a training run folder holds so far, or None.

    Parameters
    ----------
    run_dir : path
        The run folder.

    Returns
    -------
    Path or None
        ``run_dir/model`` when it holds a model (written after generator pretraining and
        at the end).
    """
    path = Path(run_dir) / RUN_MODEL_NAME
    return path if (path / "model.json").is_file() else None


def iter_export_model(
    source: str | Path, target: str | Path, *, overwrite: bool = False
) -> Generator[Progress, None, Path]:
    """Copy a model to a single ``.safetensors`` file or a model folder.

    Parameters
    ----------
    source : path
        The model (a run's ``model`` folder or a file).
    target : path
        ``name.safetensors`` for one file with the metadata in its header, anything else
        for a folder (``model.safetensors`` + ``model.json``).
    overwrite : bool
        Replace an existing model at ``target``.

    Yields
    ------
    Progress
        ``phase="save"`` before the copy.

    Returns
    -------
    Path
        The written model (checked by loading it; written atomically).

    Raises
    ------
    ModelFileError
        For an unreadable source.
    OutputError
        For an existing target (without ``overwrite``) or one that cannot be written.
    """
    from decrappify.models import load_model, save_model

    yield Progress(phase="save", step=0, total=1, message=f"{source} → {target}")
    loaded = load_model(source)
    return save_model(target, loaded.net, loaded.info, overwrite=overwrite)


def release_device_memory() -> None:
    """Give cached GPU memory back to the driver after training or prediction.

    Nothing happens when torch was never imported or CUDA was never used.
    """
    import gc
    import sys

    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return
    gc.collect()
    torch.cuda.empty_cache()
