"""The Super-resolve widget's jobs: the model's summary, a preview, the whole layer.

Both jobs take the form's :class:`~decrappify.config.predict.PredictConfig`, the same
object ``decrappify predict --config`` reads, so a layer predicted in napari equals the
file the command writes with the same settings.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from decrappify._napari.jobs.compute import central, output_target
from decrappify.config.predict import MAX_IN_MEMORY, PredictConfig
from decrappify.errors import InputError
from decrappify.events import Progress
from decrappify.io import Image

#: Largest preview side in HR pixels (the visible region's centre when zoomed out).
PREDICT_PREVIEW_MAX = 1024


@dataclass(frozen=True)
class LayerPrediction:
    """What a whole-layer prediction gives the Super-resolve widget.

    Parameters
    ----------
    image : Image
        The HR record placed over the input.
    maps : dict of str to Image
        The trust maps, placed likewise: ``uncertainty`` (the TTA spread, on the
        output's grid) and ``consistency`` (on the input's grid).
    trust : dict
        Map name to its summary (or ``{"skipped": reason}``), as ``predict --report``.
    """

    image: Image
    maps: dict[str, Image] = field(default_factory=dict)
    trust: dict[str, Any] = field(default_factory=dict)


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
        f"{g.short_name}, normalisation: {norm.method} {norm.low:g}–{norm.high:g} %",
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
    provenance = (info.training or {}).get("provenance")
    if isinstance(provenance, dict):
        lines.append(
            "a starting point shipped with decrappify, not trained on your images: keep the "
            "consistency map on to see where not to trust it"
        )
    from decrappify.api import self_check_summary

    _, warning = self_check_summary((info.training or {}).get("self_check"))
    if warning:
        lines.append(f"⚠ {warning}")
    return "\n".join(lines)


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
        region = central(slice(start, max(start, stop)), max_side)
        out.append((region.start, region.stop))
    return out[0], out[1]


def _model_info(model: str | Path) -> Any:
    from decrappify.api import model_info

    return model_info(model)


def predict_plan(
    model: str | Path, image: Image, config: PredictConfig
) -> tuple[Any, tuple[int, ...]]:
    """Read a model's metadata and check it against an image before any work.

    Parameters
    ----------
    model : path
        Model folder or ``.safetensors`` file.
    image : Image
        The LR image.
    config : PredictConfig
        The settings (their ``scale``, when given, refuses a model with another factor).

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
        For another factor than ``config.scale``, as the API says it (which also refuses
        a 2.5D model on a 2D image when it starts).
    """
    info = _model_info(model)
    config.check_scale(info.generator.scale, Path(model).name)
    g = info.generator
    out_shape = (*image.shape[:-2], image.shape[-2] * g.scale, image.shape[-1] * g.scale)
    return info, tuple(int(n) for n in out_shape)


def iter_predict_layer(
    model: str | Path,
    image: Image,
    config: PredictConfig | None = None,
    *,
    out_dir: str | Path | None = None,
    memory_limit: int = MAX_IN_MEMORY,
    name: str = "image",
) -> Generator[Progress, None, LayerPrediction]:
    """Super-resolve a whole image, into memory when small, else into an OME-Zarr store.

    Parameters
    ----------
    model : path
        Model folder or ``.safetensors`` file.
    image : Image
        The LR record (numpy or dask; a dask record is read block by block).
    config : PredictConfig or None
        The settings (``scale`` refuses a model with another factor; the file settings
        ``format``, ``resume`` and ``overwrite`` are not used).
    out_dir : path or None
        Write the result to ``out_dir/<name>_x<scale>.zarr`` (a new name if taken) and
        return it lazily. None: compute into memory when the result takes at most
        ``memory_limit`` bytes, else write to a temporary folder removed at exit.
    memory_limit : int
        Largest in-memory result, in bytes.
    name : str
        Stem of the output store.

    Yields
    ------
    Progress
        ``phase="predict"``, one per block (and the pyramid of a store).

    Returns
    -------
    LayerPrediction
        The HR record placed over the input (pixel size / factor, translate): numpy in
        memory, or lazy from the written store; the trust maps the settings ask for
        (``tta``, ``consistency``), placed likewise, and their summaries. Closing the
        generator early (Cancel) leaves no store behind.
    """
    from decrappify.api import iter_predict_image

    config = _layer_settings(config)
    yield Progress(phase="predict", step=0, total=None, message="reading the model")
    info, out_shape = predict_plan(model, image, config)
    factor = info.generator.scale
    dtype = np.dtype(config.dtype.value if config.dtype is not None else image.dtype)
    out_nbytes = int(np.prod(out_shape, dtype=np.int64)) * dtype.itemsize
    if out_dir is None and out_nbytes <= memory_limit:
        result = yield from iter_predict_image(str(model), image, None, config)
        source = None
    else:
        target = output_target(out_dir, f"{name}_x{factor}")
        # the layer name is no path: keep it out of the writer's input-overlap check
        layer = replace(image, source=None)
        result = yield from iter_predict_image(str(model), layer, target, config)
        source = str(result.path)
    # placed from the layer (the files hold the same placement)
    maps = {
        key: image.with_data(m.data, yx_factor=1.0 / factor if key == "uncertainty" else 1.0)
        for key, m in result.maps.items()
    }
    kwargs = {} if source is None else {"source": source}
    return LayerPrediction(
        image=image.with_data(result.image.data, yx_factor=1.0 / factor, **kwargs),
        maps=maps,
        trust=dict(result.stats.get("trust", {})),
    )


def iter_predict_preview(
    model: str | Path,
    image: Image,
    config: PredictConfig | None = None,
    *,
    box: tuple[tuple[float, float], tuple[float, float]],
    plane: int = 0,
    max_side: int = PREDICT_PREVIEW_MAX,
) -> Generator[Progress, None, Image]:
    """Super-resolve only the visible region of one plane (:func:`decrappify.api.predict_region`).

    Parameters
    ----------
    model : path
        Model folder or ``.safetensors`` file.
    image : Image
        The LR record.
    config : PredictConfig or None
        The settings, as for :func:`iter_predict_layer`.
    box : ((y0, y1), (x0, x1))
        The visible region in LR data coordinates.
    plane : int
        Plane of a stack.
    max_side : int
        Largest preview side in HR pixels (the centre of a zoomed-out view).

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

    config = _layer_settings(config)
    yield Progress(phase="preview", step=0, total=None, message="reading the model")
    info, _ = predict_plan(model, image, config)
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
    out = predict_region(str(model), image, (rows, cols), config, plane=plane if stack else None)
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


def _layer_settings(config: PredictConfig | None) -> PredictConfig:
    """The settings of a layer job: a new store is never resumed nor overwritten."""
    config = config if config is not None else PredictConfig()
    return config.model_copy(update={"resume": False, "overwrite": False})
