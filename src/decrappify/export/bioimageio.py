"""Export a trained model as a BioImage Model Zoo (bioimage.io) package.

``decrappify export MODEL --bioimageio OUT.zip`` writes a zip that bioimage.io consumers
(deepImageJ, ilastik, bioimageio.core, the model zoo) run without decrappify: ``rdf.yaml``
in the model spec 0.5 of the installed ``bioimageio.spec``, the weights as TorchScript and
as a PyTorch state dict with a generated, self-contained architecture, a test input and
decrappify's output for it, the percentile normalisation as bioimage.io preprocessing, the
measured receptive field as the halo, a cover image and a README.

The steps: load the model and measure its receptive field (the halo); cut the test
tensors; write and check the weights (:mod:`.weights`); write the text (:mod:`.rdf`,
:mod:`.readme`); validate and zip with ``bioimageio.spec`` and run ``bioimageio.core``'s
test (:mod:`.package`). Everything is written in a hidden folder beside the target and
the zip moved into place only when it passed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from decrappify.errors import InputError, OutputError
from decrappify.events import Progress
from decrappify.export.package import bioimageio_test, package, spec_version
from decrappify.export.rdf import Geometry, PackageFiles, People, package_name, rdf_content
from decrappify.export.readme import readme_text
from decrappify.export.tensors import (
    PathLike,
    make_test_input,
    model_crappifier,
    normalised_input,
    write_cover,
)
from decrappify.export.weights import WEIGHT_FORMATS, weights_entries, write_weights
from decrappify.io.atomic import partial_path, write_failure

#: Side of the probe the receptive field is measured on (LR pixels): radii up to a
#: quarter of it are exact. Larger probes cost memory as the square of the side in the
#: self-attention layers (a 512-pixel probe can take 16 GiB).
RADIUS_PROBE = 384
#: GitHub user names (what bioimage.io identifies maintainers by).
_GITHUB_USER = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-"


@dataclass
class BioimageioExport:
    """What :func:`iter_export_bioimageio` wrote and how bioimage.io judged it.

    Parameters
    ----------
    path : Path
        The package (zip).
    rdf : dict
        The ``rdf.yaml`` content.
    status : str or None
        ``bioimageio.core``'s verdict on the package (``"passed"``), None when not tested.
    checks : list of (str, str)
        Each check bioimageio ran and its status.
    test_source : str
        Where the test input came from.
    seconds : float
        Wall-clock time of the export.
    """

    path: Path
    rdf: dict[str, Any]
    status: str | None = None
    checks: list[tuple[str, str]] = field(default_factory=list)
    test_source: str = ""
    seconds: float = 0.0


def parse_weight_formats(value: str | Sequence[str]) -> tuple[str, ...]:
    """Parse ``"torchscript,pytorch_state_dict"`` (or a list) into :data:`WEIGHT_FORMATS` order.

    Raises :class:`InputError` for an unknown or empty choice.
    """
    items = value.split(",") if isinstance(value, str) else list(value)
    names = {i.strip().lower() for i in items if i.strip()}
    unknown = sorted(names - set(WEIGHT_FORMATS))
    if unknown or not names:
        raise InputError(
            f"--weights: expected one or more of {', '.join(WEIGHT_FORMATS)} "
            f"(comma-separated), got {value!r}"
        )
    return tuple(f for f in WEIGHT_FORMATS if f in names)


def parse_people(
    authors: Sequence[str] | None = None,
    maintainers: Sequence[str] | None = None,
    github_users: Sequence[str] | None = None,
    cite: Sequence[str] | None = None,
    license: str = "CC-BY-4.0",
) -> People:
    """Check the package's people and citations (``--author``, ``--maintainer`` ...).

    Maintainers are GitHub users (``--github-user``); ``--maintainer`` gives their names,
    in the same order. Each ``--cite`` is the citation's text ending in its DOI
    (``10.xxxx/...``) or URL.
    """
    users = [u.strip().lstrip("@") for u in github_users or []]
    for user in users:
        if not user or len(user) > 39 or set(user) - set(_GITHUB_USER):
            raise InputError(f"--github-user: {user!r} is not a GitHub user name")
    names = list(maintainers or [])
    if names and len(names) != len(users):
        raise InputError(
            f"--maintainer: bioimage.io identifies maintainers by their GitHub account; "
            f"give one --github-user per --maintainer (got {len(names)} maintainers and "
            f"{len(users)} GitHub users)"
        )
    return People(
        authors=list(authors) if authors else ["decrappify user"],
        maintainers=list(zip(names or [None] * len(users), users, strict=True)),
        cite=[_citation(text) for text in cite or []],
        license=license,
    )


def _citation(text: str) -> dict[str, str]:
    words = text.split()
    ref = words[-1].rstrip(".") if words else ""
    if len(words) > 1 and ref.startswith("10.") and "/" in ref:
        return {"text": " ".join(words[:-1]), "doi": ref}
    if len(words) > 1 and ref.startswith(("https://", "http://")):
        return {"text": " ".join(words[:-1]), "url": ref}
    raise InputError(
        f"--cite: expected the citation's text followed by its DOI (10.xxxx/...) or URL, "
        f"got {text!r}"
    )


def iter_export_bioimageio(
    model: PathLike,
    out: PathLike,
    *,
    test_image: PathLike | None = None,
    name: str | None = None,
    description: str | None = None,
    people: People | None = None,
    weights: str | Sequence[str] = WEIGHT_FORMATS,
    test: bool = True,
    overwrite: bool = False,
    seed: int = 0,
) -> Generator[Progress, None, BioimageioExport]:
    """Write a bioimage.io model package of a decrappify model, and test it.

    Parameters
    ----------
    model : path
        A model folder or ``.safetensors`` model file.
    out : path
        The package to write (``.zip``).
    test_image : path or None
        A low-resolution image the test tensors are cut from (its central crop; for a
        2.5D model, the central planes of a stack). None: a synthetic image of the kind
        the model's crappifier was made for, crappified by that crappifier.
    name, description : str or None
        Resource name and description (defaults from the model).
    people : People or None
        Authors, maintainers, citations and licence (:func:`parse_people`); None: an
        anonymous ``"decrappify user"`` under CC-BY-4.0 (set it before sharing).
    weights : str or sequence of str
        ``"pytorch_state_dict"`` and/or ``"torchscript"``.
    test : bool
        Run ``bioimageio.core``'s test (the test input through every weight format,
        compared with the test output; inference at other sizes) and refuse to write a
        package that fails it.
    overwrite : bool
        Replace an existing file at ``out``.
    seed : int
        Seed of the synthetic test image.

    Yields
    ------
    Progress
        ``phase="export"``, one per step.

    Returns
    -------
    BioimageioExport
        The package, its rdf and the test verdict.

    Raises
    ------
    InputError
        For a bad option, a test image that does not fit the model, or missing (or
        incompatible) ``bioimageio.spec`` / ``bioimageio.core``.
    ModelFileError
        For a missing or corrupted model.
    OutputError
        If ``out`` exists (without ``overwrite``), a weight format does not reproduce the
        network, or the package is invalid or fails its test (nothing is left at ``out``).
    """
    start = time.perf_counter()
    formats = parse_weight_formats(weights)
    target = _check_target(Path(out), overwrite)
    format_version = spec_version(test)
    total = 5 if test else 4
    yield Progress(phase="export", step=0, total=total, message="receptive field")
    job = replace(
        _prepare(Path(model), test_image, name, description, seed),
        formats=formats,
        people=people or parse_people(),
        format_version=format_version,
    )
    yield Progress(phase="export", step=1, total=total, message="test tensors")
    content, status, checks = yield from _iter_package(job, target, test=test, total=total)
    yield Progress(phase="export", step=total, total=total, message=target.name)
    return BioimageioExport(
        path=target,
        rdf=content,
        status=status,
        checks=checks,
        test_source=job.test_source,
        seconds=time.perf_counter() - start,
    )


def _iter_package(
    job: _Job, target: Path, *, test: bool, total: int
) -> Generator[Progress, None, tuple[dict[str, Any], str | None, list[tuple[str, str]]]]:
    """Write the package in a work folder beside ``target``, test it, then move it there.

    Returns the rdf, the test's status and its checks (None and none without ``test``).
    """
    work = partial_path(target)
    try:
        _remove(work)
        work.mkdir()
        content = yield from _write_files(job, work, total)
        zipped = package(content, work, target)
        status, checks = None, []
        if test:
            yield Progress(phase="export", step=4, total=total, message="bioimageio test")
            status, checks = bioimageio_test(zipped, target)
        os.replace(zipped, target)
    except Exception as err:  # torch reports a full disk as RuntimeError (inline_container)
        # ... and a short write under a file size limit as an OSError without errno
        unexplained = isinstance(err, RuntimeError) or (
            isinstance(err, OSError) and err.errno is None
        )
        failure = write_failure(target, err, writing=unexplained)
        if failure is not None:
            raise failure from err
        if isinstance(err, OSError) and not isinstance(err, OutputError):
            raise OutputError(
                f"{target}: cannot write the package ({err.strerror or err})"
            ) from err
        raise
    finally:
        _remove(work)
    return content, status, checks


def measure_geometry(model: Any) -> Geometry:
    """Find a network's valid sizes, and its halo from its measured receptive field.

    ``model`` is what :func:`decrappify.predict.network.model_handle` takes (a loaded
    model, its path or a bare network). The radius is the one decrappify's automatic
    tile overlap uses (sensitivity below 0.1 % outside it), measured on a probe of
    :data:`RADIUS_PROBE` pixels unless a measurement of the same model file that settles
    it is cached (beside the model, shared with ``decrappify predict``).
    """
    from decrappify.predict.network import model_handle
    from decrappify.predict.receptive import DEFAULT_TOL, receptive_radius
    from decrappify.predict.tile_geometry import tile_quantum

    handle = model_handle(model)
    record = receptive_radius(
        handle.net,
        digest=handle.digest,
        model_path=handle.path,
        probe=RADIUS_PROBE,
        tol=DEFAULT_TOL,
        needed=RADIUS_PROBE // 4,
    )
    step = tile_quantum(handle.scale, handle.multiple)
    return Geometry.from_radius(handle.scale, handle.n_frames, step, record.radius)


@dataclass
class _Job:
    """What one export writes: the network, its metadata and the user's choices."""

    net: Any
    info: Any
    geometry: Geometry
    raw: np.ndarray
    test_source: str
    title: str
    description: str
    formats: tuple[str, ...] = WEIGHT_FORMATS
    people: People = field(default_factory=lambda: People(authors=["decrappify user"]))
    format_version: str = ""


def _prepare(
    model: Path, test_image: PathLike | None, name: str | None, description: str | None, seed: int
) -> _Job:
    """Load the model, measure its halo and cut the raw test input."""
    from decrappify.models.store import load_model

    loaded = load_model(model)
    net = loaded.net.eval()
    # the crappifier first: measuring the halo takes a while, a bad crappifier does not
    crappifier = None if test_image is not None else model_crappifier(loaded.info)
    geometry = measure_geometry(loaded)
    raw, test_source = make_test_input(test_image, crappifier, geometry, seed)
    return _Job(
        net=net,
        info=loaded.info,
        geometry=geometry,
        raw=raw,
        test_source=test_source,
        title=package_name(name, _model_name(model), geometry.scale),
        description=description or _default_description(loaded.info, geometry),
    )


def _write_files(job: _Job, work: Path, total: int) -> Generator[Progress, None, dict[str, Any]]:
    """Write every file of the package into ``work``; return the rdf content naming them."""
    import torch

    from decrappify.models.store import count_parameters

    normalised = normalised_input(job.raw, job.info)
    _write_tensors(job.net, job.raw, normalised, work, job.geometry)
    yield Progress(phase="export", step=2, total=total, message="weights")
    write_weights(job.net, normalised, job.formats, work, job.geometry, job.title)
    yield Progress(phase="export", step=3, total=total, message="package")
    readme = readme_text(
        info=job.info,
        name=job.title,
        description=job.description,
        geometry=job.geometry,
        test_source=job.test_source,
        weight_formats=job.formats,
        people=job.people,
    )
    (work / "README.md").write_text(readme, encoding="utf-8")
    files = PackageFiles({p.name: _sha256(p) for p in work.iterdir() if p.is_file()})
    return rdf_content(
        info=job.info,
        name=job.title,
        description=job.description,
        people=job.people,
        files=files,
        geometry=job.geometry,
        weights=weights_entries(job.formats, files, torch.__version__.split("+")[0]),
        parameter_count=count_parameters(job.net),
        test_source=job.test_source,
        format_version=job.format_version,
    )


def _write_tensors(
    net: Any, raw: np.ndarray, normalised: np.ndarray, work: Path, g: Geometry
) -> None:
    """Write the test tensors (raw input, network output), their TIFF views and the cover."""
    import tifffile
    import torch

    with torch.no_grad():
        expected = net(torch.from_numpy(normalised[None])).numpy().astype(np.float32)
    np.save(work / "test_input.npy", raw[None])
    np.save(work / "test_output.npy", expected)
    for sample, data in (("input", raw[0] if len(raw) == 1 else raw), ("output", expected)):
        tifffile.imwrite(work / f"sample_{sample}.tif", data.squeeze(), photometric="minisblack")
    write_cover(work / "cover.png", raw[raw.shape[0] // 2], expected[0, 0], g.scale)


def _check_target(target: Path, overwrite: bool) -> Path:
    if target.suffix.lower() != ".zip":
        raise InputError(f"--bioimageio {target}: expected a .zip file name")
    if target.is_dir():
        raise OutputError(f"{target}: is a folder; expected a .zip file name")
    if target.exists() and not overwrite:
        raise OutputError(f"{target}: already exists; pass --overwrite or choose another name")
    if not target.parent.is_dir():
        raise OutputError(f"{target}: folder {target.parent} does not exist")
    return target


def _model_name(path: Path) -> str:
    """``em_x4`` for ``em_x4.safetensors``; the run's name for a run's ``RUN/model`` folder."""
    path = path.resolve()
    return path.parent.name if path.stem == "model" else path.stem


def _default_description(info: Any, g: Geometry) -> str:
    planes = "" if g.n_frames == 1 else f" from {g.n_frames} neighbouring planes"
    text = (
        f"decrappify x{g.scale} super-resolution{planes}: a generator trained with the "
        "NoGAN schedule (fast.ai decrappify, PSSR) on crappified high-resolution images."
    )
    if info.description:
        text += f" {info.description}."
    return text[:512]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.unlink()
