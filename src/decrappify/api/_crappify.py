"""Crappify and sample: degrade high-res files into realistic low-res ones, make synthetic data."""

from __future__ import annotations

import math
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import Any, Literal

from decrappify.api.common import FileResult, Format, PathLike, file_seed, iter_batch
from decrappify.errors import InputError, OutputError
from decrappify.events import Progress, run_to_end


def iter_crappify(
    inputs: Sequence[PathLike],
    out_dir: PathLike,
    *,
    config: Any,
    seed: int = 0,
    fmt: Format = "tif",
    overwrite: bool = False,
) -> Generator[Progress, None, list[FileResult]]:
    """Crappify each input file into ``out_dir/<stem>.<fmt>``, chunk by chunk.

    Parameters
    ----------
    inputs : sequence of path
        Files, folders (each image file inside) or glob patterns.
    out_dir : path
        Output folder (created if missing).
    config : CrappifyConfig
        The degradation pipeline.
    seed : int
        Seed; each file's stream is derived from it and the file's stem.
    fmt : {"tif", "zarr"}
        Output format (OME-TIFF or OME-Zarr).
    overwrite : bool
        Replace existing outputs.

    Yields
    ------
    Progress
        One event per written block, ``phase`` is the input's file name.

    Returns
    -------
    list of FileResult
        One per input, in order.
    """
    from decrappify.crappify import crappify_image
    from decrappify.io import iter_write_image, read_image

    def work(path: Path, out_path: Path) -> Generator[Progress, None, dict[str, Any]]:
        image = read_image(path)
        lr = crappify_image(image, config, seed=file_seed(seed, path))
        yield from iter_write_image(lr, out_path, overwrite=overwrite)
        return {"input_shape": image.shape, "output_shape": lr.shape, "dtype": str(lr.dtype)}

    return (yield from iter_batch(inputs, out_dir, fmt, work))


def crappify(inputs: Sequence[PathLike], out_dir: PathLike, **kwargs: Any) -> list[FileResult]:
    """Run :func:`iter_crappify` to the end.

    Parameters
    ----------
    inputs : sequence of path
        Input files, folders or globs.
    out_dir : path
        Output folder.
    **kwargs
        As :func:`iter_crappify`.

    Returns
    -------
    list of FileResult
        One per input.
    """
    return run_to_end(iter_crappify(inputs, out_dir, **kwargs)) or []


def crappify_config(
    preset: str | None = "em",
    *,
    config_file: PathLike | None = None,
    scale: int | None = None,
) -> Any:
    """Build a crappify config from a preset or a YAML file, with a scale override.

    Parameters
    ----------
    preset : str or None
        Preset name (ignored when ``config_file`` is given).
    config_file : path or None
        A YAML file written by ``decrappify crappify --fit`` or by hand.
    scale : int or None
        Override the downsampling factor.

    Returns
    -------
    CrappifyConfig
        The validated configuration.
    """
    from decrappify.config.crappify import CrappifyConfig
    from decrappify.crappify import get_preset

    if config_file is not None:
        config = CrappifyConfig.from_yaml(config_file)
    elif preset is not None:
        config = get_preset(preset)
    else:
        raise InputError("crappify: give a --preset or a --config file")
    if scale is not None:
        config = config.with_scale(scale)
    return config


def fit_crappifier(
    lr: Sequence[PathLike],
    hr: Sequence[PathLike] | None = None,
    *,
    out: PathLike | None = None,
    overwrite: bool = False,
) -> Any:
    """Fit the noise model of a microscope to its real low-resolution images.

    Parameters
    ----------
    lr : sequence of path
        Real low-resolution (fast / low-dose) acquisitions: files, folders or globs.
    hr : sequence of path or None
        Matching high-resolution acquisitions, if any: paired with ``lr`` by name
        (``lr/cell1.tif`` with ``hr/cell1.tif``), or in the order given when both name
        their files one by one (:func:`decrappify.io.pairing.pair_inputs`).
    out : path or None
        Write the fitted config (YAML) here. It is checked before any work: it must not
        be one of the images, and an existing file is replaced only with ``overwrite``.
    overwrite : bool
        Replace an existing ``out``.

    Returns
    -------
    FitResult
        The fitted config and a report.

    Raises
    ------
    InputError
        For images that cannot be read or paired, or pairs that do not show one field at
        an integer scale.
    """
    from decrappify.crappify import fit_noise_model
    from decrappify.io import atomic_write_text, expand_inputs, read_image
    from decrappify.io.locks import lock_outputs
    from decrappify.io.outputs import OutputPlan
    from decrappify.io.pairing import pair_inputs

    if hr:
        pairs = pair_inputs(lr, hr)
        lr_paths, hr_paths = [a for a, _ in pairs], [b for _, b in pairs]
    else:
        lr_paths, hr_paths = expand_inputs(lr), None
    targets = []
    if out is not None:
        plan = OutputPlan()
        plan.add_inputs([*lr_paths, *(hr_paths or [])])
        targets = [plan.add(out, "the fitted config")]
        plan.check()
        if Path(out).is_dir():
            raise OutputError(f"{out}: is a folder; give the name of the YAML file to write")
        if Path(out).exists() and not overwrite:
            raise OutputError(f"{out}: already exists; pass --overwrite to replace it")
    lr_images = [read_image(p) for p in lr_paths]
    hr_images = [read_image(p) for p in hr_paths] if hr_paths is not None else None
    for lr_image, hr_image in zip(lr_images, hr_images or [], strict=False):
        _check_pair_shapes(lr_image, hr_image)
    result = fit_noise_model(lr_images, hr_images)
    if out is not None:
        with lock_outputs(targets):
            atomic_write_text(out, result.to_yaml())
    return result


def _check_pair_shapes(lr: Any, hr: Any) -> None:
    """Refuse an LR/HR pair whose Y/X sizes are not related by one integer scale."""
    (ly, lx), (hy, hx) = lr.shape[-2:], hr.shape[-2:]
    scale = round(hy / ly) if ly else 0
    related = scale >= 1 and abs(hy - scale * ly) < scale and abs(hx - scale * lx) < scale
    if not related or lr.shape[:-2] != hr.shape[:-2]:
        raise InputError(
            f"--fit {lr.source} {tuple(lr.shape)} and --hr {hr.source} {tuple(hr.shape)}: the "
            "high-res image must show the same field as the low-res one, an integer scale "
            "larger in Y and X; pair each --fit image with its --hr image (same name, or the "
            "same order)"
        )


# ----------------------------------------------------------------------------- sample


def iter_sample(
    kind: Literal["em", "fluorescence"],
    out: PathLike,
    *,
    size: int | Sequence[int] = 1024,
    seed: int = 0,
    overwrite: bool = False,
) -> Generator[Progress, None, Path]:
    """Write a synthetic EM or fluorescence image (any size, generated chunk by chunk).

    Parameters
    ----------
    kind : {"em", "fluorescence"}
        Which kind of sample.
    out : path
        Output file (``.tif`` / ``.tiff`` / ``.zarr`` / ``.ome.zarr``).
    size : int or sequence of int
        Edge length of a square 2D image, or a full shape (Y, X) or (Z, Y, X).
    seed : int
        Seed.
    overwrite : bool
        Replace an existing file.

    Yields
    ------
    Progress
        One event per written block.

    Returns
    -------
    Path
        The written file.
    """
    from decrappify.io import iter_write_image
    from decrappify.io.paths import check_free_space
    from decrappify.sample import synthetic_image

    shape = (int(size), int(size)) if isinstance(size, int) else tuple(int(s) for s in size)
    if any(s < 16 for s in shape[-2:]):
        raise InputError(f"sample: --size must be at least 16 pixels (got {shape})")
    dtype = "uint8" if kind == "em" else "uint16"
    nbytes = math.prod(shape) * (1 if kind == "em" else 2)
    check_free_space(out, nbytes, f"a {'x'.join(map(str, shape))} {dtype} image")
    image = synthetic_image(kind, shape, seed=seed, chunks=(*([1] * (len(shape) - 2)), 1024, 1024))
    return (yield from iter_write_image(image, out, overwrite=overwrite))
