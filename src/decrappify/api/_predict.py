"""Predict: super-resolve images larger than memory with a trained model, tile by tile.

Every function takes the settings as one :class:`~decrappify.config.predict.PredictConfig`
(or a mapping or YAML file of its settings, see :func:`predict_config`).
``iter_predict`` runs a batch of files (each into ``out_dir/<stem>.zarr`` or ``.tif``);
``iter_predict_image`` one image (a file, an array or a napari layer's
:class:`~decrappify.io.Image`), into a file or into memory; ``predict_region`` one
rectangle of one plane, for a quick preview. See ``docs/predict.md``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from decrappify.api.common import FileResult, PathLike, check_report_target, iter_batch
from decrappify.events import Progress, run_to_end

if TYPE_CHECKING:
    from decrappify.config.predict import PredictConfig


def predict_config(config: Any = None, **settings: Any) -> PredictConfig:
    """Build prediction settings from a YAML file, a mapping or a config, with changes.

    Parameters
    ----------
    config : PredictConfig, mapping, path or None
        What to start from: a ``predict.yaml`` (keys are the ``decrappify predict``
        flags: ``tile``, ``overlap``, ``batch``, ``device``, ``dtype`` ...), a mapping of
        the same keys, a config, or None for the defaults.
    **settings
        Settings replacing those of ``config`` (the command's flags), e.g. ``tile=256``.

    Returns
    -------
    PredictConfig
        The validated settings.

    Raises
    ------
    InputError
        For a missing or invalid file, an unknown setting or an invalid value (one line
        naming the file or the setting).
    """
    from decrappify.config.predict import PredictConfig

    return PredictConfig.build(config, **settings)


def iter_predict(
    model: Any,
    inputs: Sequence[PathLike],
    out_dir: PathLike,
    config: Any = None,
    *,
    client: Any = None,
    report: PathLike | None = None,
) -> Generator[Progress, None, list[FileResult]]:
    """Super-resolve each input into ``out_dir/<stem>.<format>``; one bad input fails alone.

    The model is read and the settings are checked once, before any input (a missing or
    corrupted model file, or a tile whose ``tile × scale`` is not a multiple of 32, stops
    the batch with one error). Then each input is predicted block by block
    (:func:`decrappify.predict.engine.iter_predict_image`); an input that fails
    (unreadable, RGB, a 2D image for a 2.5D model, ...) is reported in its
    :class:`FileResult` and the others still run.

    Parameters
    ----------
    model : str, Path or LoadedModel
        A model file/folder written by :func:`decrappify.models.save_model`, or the
        loaded model.
    inputs : sequence of path
        TIFF files, Zarr/OME-Zarr stores, folders (their images) or glob patterns.
    out_dir : path
        Output folder (created if missing; it must not lie inside an input).
    config : PredictConfig, mapping, path or None
        The settings (see :func:`predict_config`): ``format`` (OME-Zarr, chunked with a
        pyramid and resumable, or tiled BigTIFF), ``tile``, ``overlap``, ``batch``,
        ``device``, ``amp``, ``compile``, ``dtype``, ``threads``, ``scale``, ``chunk``,
        ``block``; ``tta`` and ``consistency`` (the trust maps, written beside each
        output); ``resume`` (finish interrupted outputs, keep and report existing ones
        with all their maps as skipped), ``overwrite``; ``scheduler`` (a
        dask.distributed address) or ``cluster: local`` with ``workers``.
    client : distributed.Client or None
        A cluster client to compute on (instead of ``scheduler`` / ``cluster``).
    report : path or None
        Write the JSON report of the batch here (:func:`write_report`), also when inputs
        failed. It is planned with the outputs: an existing file is replaced only with
        ``overwrite``, or with ``resume`` when it is a report of ``decrappify predict``.

    Yields
    ------
    Progress
        Per block of each file (``phase`` is the file name, ``info["rate"]`` the output
        rate as text such as ``"3.20 MPix/s"``, ``info["pixels_per_s"]`` the number).

    Returns
    -------
    list of FileResult
        One per input, in order; ``info`` holds ``input_shape``, ``output_shape``,
        ``dtype``, ``mpix_per_s``, ``blocks``, ``blocks_computed``, ``blocks_resumed``,
        ``tile``, ``overlap`` and ``device`` (or ``skipped``); ``trust`` (each trust
        map's summary: ``consistency`` ``score`` and ``flagged_fraction``,
        ``uncertainty`` ``mean`` and ``max``) and ``maps`` (their paths).
    """
    from decrappify.predict.cluster import open_client
    from decrappify.predict.network import model_handle
    from decrappify.predict.settings import resolve_settings

    config = predict_config(config)
    handle = model_handle(model)
    device_type = resolve_settings(handle, None, config).device.type
    scheduler = client if client is not None else config.scheduler
    kind = config.cluster.value if config.cluster is not None else None
    with open_client(scheduler, kind, workers=config.workers, device=device_type) as cluster:
        batch = _Batch(handle, config, cluster, None if report is None else Path(report))
        return (
            yield from iter_batch(
                inputs,
                out_dir,
                config.format.value,
                batch.work,
                sidecars=batch.sidecars,
                extra_inputs=[handle.path],
                extra_outputs=[] if report is None else [(report, "the --report")],
                prepare=batch.prepare,
                finish=batch.finish,
            )
        )


#: What a batch's ``FileResult.info`` keeps of a prediction's figures.
INFO_KEYS = (
    "input_shape",
    "output_shape",
    "dtype",
    "blocks",
    "blocks_computed",
    "blocks_resumed",
    "tile",
    "overlap",
    "radius",
    "batch",
    "device",
    "lo",
    "hi",
    "compute_seconds",
    "trust",
    "maps",
    "trust_seconds",
)


@dataclass
class _Batch:
    """One model and its settings applied to each input of a batch, and the batch's report."""

    handle: Any
    config: PredictConfig
    cluster: Any
    report: Path | None

    def work(self, path: Path, out_path: Path) -> Generator[Progress, None, dict[str, Any]]:
        """Predict one input (or keep its finished output with ``resume``)."""
        from decrappify.predict.engine import iter_predict_image

        run = self.config
        if run.resume and not run.overwrite and os.path.lexists(out_path):
            missing = _missing_maps(self.handle, run, out_path, run.format.value)
            if not missing:
                return {"skipped": "output exists (kept by --resume)"}
            # finished before its trust maps were written: predict it again
            run = run.model_copy(update={"overwrite": True})
        result = yield from iter_predict_image(
            self.handle, path, out_path, run, client=self.cluster
        )
        info = {k: result.stats[k] for k in INFO_KEYS if k in result.stats}
        info["mpix_per_s"] = result.stats["pixels_per_s"] / 1e6
        return info

    def sidecars(self, out_path: Path) -> list[tuple[Path, str]]:
        """List the trust maps written beside a TIFF output (OME-Zarr holds them inside)."""
        from decrappify.predict.trust import map_path

        if self.config.format.value != "tif":
            return []
        names = ["uncertainty"] if self.config.tta else []
        if self.config.consistency and self.handle.crappify is not None:
            names.append("consistency")
        return [(map_path(out_path, "tiff", name), f"{name} map") for name in names]

    def prepare(self) -> None:
        """Refuse a report that is a folder or someone else's file, before any work."""
        if self.report is not None:
            check_report_target(
                self.report, "--report", overwrite=self.config.overwrite, resume=self.config.resume
            )

    def finish(self, results: list[FileResult]) -> None:
        """Write the report (also when inputs failed)."""
        if self.report is not None:
            model = self.handle.path or self.handle.name
            write_report(self.report, model, self.config.settings(), results)


def write_report(path: PathLike, model: Any, settings: dict[str, Any], results: list[Any]) -> None:
    """Write the JSON report of a prediction batch (atomically).

    Parameters
    ----------
    path : path
        The report file.
    model : path
        The model used.
    settings : dict
        The run's settings.
    results : list of FileResult
        One per input.
    """
    from decrappify.io import atomic_write_text

    document = {
        "command": "predict",
        "model": str(model),
        "settings": settings,
        "ok": all(r.ok for r in results),
        "results": [r.to_dict() for r in results],
    }
    atomic_write_text(path, json.dumps(document, indent=2, default=_jsonable) + "\n")


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def _missing_maps(handle: Any, config: PredictConfig, out_path: Path, fmt: str) -> list[str]:
    """List the trust maps asked for that an existing output lacks."""
    from decrappify.io import output_format, read_image
    from decrappify.predict.trust import map_path, plan_trust

    if not (config.tta or config.consistency and handle.crappify is not None):
        return []
    plan = plan_trust(
        handle.crappify,
        handle.scale,
        read_image(out_path),  # the pixel size only (the maps' names do not depend on it)
        tta=config.tta,
        consistency=config.consistency,
    )
    kind = output_format(out_path, fmt)
    return [n for n in plan.names if not os.path.lexists(map_path(out_path, kind, n))]


def predict(
    model: Any, inputs: Sequence[PathLike], out_dir: PathLike, config: Any = None, **kwargs: Any
) -> list[FileResult]:
    """Run :func:`iter_predict` to the end.

    Parameters
    ----------
    model : str, Path or LoadedModel
        The model.
    inputs : sequence of path
        Input files, folders or globs.
    out_dir : path
        Output folder.
    config : PredictConfig, mapping, path or None
        The settings.
    **kwargs
        ``client``, as for :func:`iter_predict`.

    Returns
    -------
    list of FileResult
        One per input.
    """
    return run_to_end(iter_predict(model, inputs, out_dir, config, **kwargs)) or []


def iter_predict_image(
    model: Any,
    image: Any,
    out_path: PathLike | None = None,
    config: Any = None,
    **kwargs: Any,
) -> Generator[Progress, None, Any]:
    """Super-resolve one image into a file, or into memory when ``out_path`` is None.

    Parameters
    ----------
    model : str, Path, LoadedModel or torch.nn.Module
        The model.
    image : Image, array or path
        The LR image (a napari layer wrapped as an :class:`~decrappify.io.Image` keeps its
        pixel size and translation; the result overlays it).
    out_path : path or None
        ``.zarr``/``.ome.zarr`` or ``.tif``; None for an in-memory numpy result (refused
        above ``max_memory`` bytes, 2 GiB by default).
    config : PredictConfig, mapping, path or None
        The settings (see :func:`predict_config`).
    **kwargs
        ``client`` and ``max_memory`` of
        :func:`decrappify.predict.engine.iter_predict_image`.

    Yields
    ------
    Progress
        ``phase="predict"``, one event per block.

    Returns
    -------
    PredictResult
        ``image`` (the result), ``path`` and ``stats``.
    """
    from decrappify.predict.engine import iter_predict_image as engine_iter

    return (yield from engine_iter(model, image, out_path, predict_config(config), **kwargs))


def trust_maps(path: PathLike) -> dict[str, Any]:
    """Open the trust maps ``decrappify predict`` wrote beside a prediction.

    Parameters
    ----------
    path : path
        The prediction (``<stem>.zarr`` or ``<stem>.tif``).

    Returns
    -------
    dict of str to Image
        ``uncertainty`` (the TTA spread, on the prediction's grid) and ``consistency``
        (on the input's grid), those found, opened lazily.
    """
    from decrappify.predict.trust import read_trust_maps

    return read_trust_maps(path)


def predict_region(
    model: Any,
    image: Any,
    region: Any,
    config: Any = None,
    *,
    plane: int | None = None,
    lo_hi: tuple[float, float] | None = None,
) -> Any:
    """Super-resolve one LR rectangle of one plane: napari's "preview current view".

    Parameters
    ----------
    model : str, Path, LoadedModel or torch.nn.Module
        The model.
    image : Image or array
        The LR image.
    region : pair of (start, stop) or pair of slice
        LR rectangle of the plane.
    config : PredictConfig, mapping, path or None
        The settings (``tile``, ``overlap``, ``batch``, ``device``, ``dtype``, ``scale``
        ... as for :func:`iter_predict`).
    plane : int or None
        Plane of a ZYX/TYX stack.
    lo_hi : tuple of float or None
        The image's normalisation range when already known (saves a pass over it).

    Returns
    -------
    Image
        2D HR image of the region, placed over it (pixel size / scale, translation).
    """
    from decrappify.predict.engine import predict_image_region

    return predict_image_region(
        model, image, region, predict_config(config), plane=plane, lo_hi=lo_hi
    )
