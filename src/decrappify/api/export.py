"""Export a trained model as a BioImage Model Zoo (bioimage.io) package.

``decrappify export MODEL --bioimageio OUT.zip`` writes a zip that bioimage.io consumers
(deepImageJ, ilastik, bioimageio.core, the model zoo) read: ``rdf.yaml`` in the model spec
0.5 of the installed ``bioimageio.spec``, the weights as TorchScript and as a PyTorch state
dict with its architecture source, a test input and decrappify's output for it, the
percentile normalisation as bioimage.io preprocessing, a cover image and a README.

The exported network is the one :func:`decrappify.models.load_model` builds, whole
(bilinear upsampling, padding, U-Net): it is traced as a black box, so the export does not
depend on how the generator is made inside. The trace is checked against the network on a
second input size before anything is written, and the finished package is run by
``bioimageio.core`` (``bioimageio test``) before it is moved into place.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
import warnings
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from decrappify.api._bioimageio_rdf import (
    Geometry,
    PackageFiles,
    package_name,
    rdf_content,
    readme_text,
)
from decrappify.api._bioimageio_tensors import make_test_input, normalised_input, write_cover
from decrappify.api.common import PathLike
from decrappify.errors import InputError, OutputError
from decrappify.events import Progress, run_to_end

#: Weight formats a package can hold (``--weights``); the state dict is the original.
WEIGHT_FORMATS = ("pytorch_state_dict", "torchscript")
#: Input pixels at each tile border that bioimage.io consumers should not keep: the
#: context margin of decrappify's own tiler at its default overlap (half a 128-pixel tile).
HALO = 16
#: Largest difference allowed between the traced TorchScript network and the network.
TRACE_ATOL = 1e-4
#: torch's notice that TorchScript is deprecated for torch.export, which bioimage.io cannot
#: read yet (TorchScript is the PyTorch format deepImageJ and bioimageio.core run).
TORCH_JIT_DEPRECATED = r"`torch\.jit\.\w+` is deprecated"
#: Installing the optional dependencies.
INSTALL_HINT = "pip install 'decrappify[export]'"


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
    """Parse ``"torchscript,pytorch_state_dict"`` (or a list) into known weight formats.

    Parameters
    ----------
    value : str or sequence of str
        Comma-separated names or a sequence.

    Returns
    -------
    tuple of str
        The formats, in :data:`WEIGHT_FORMATS` order.

    Raises
    ------
    InputError
        For an unknown or empty choice.
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


def iter_export_bioimageio(
    model: PathLike,
    out: PathLike,
    *,
    test_image: PathLike | None = None,
    name: str | None = None,
    description: str | None = None,
    authors: Sequence[str] | None = None,
    license: str = "CC-BY-4.0",
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
        the model's crappifier was made for (EM for the ``em`` presets, fluorescence
        otherwise), crappified by that crappifier.
    name, description : str or None
        Resource name and description (defaults from the model).
    authors : sequence of str or None
        Names of the people who trained the model (default ``"decrappify user"``: set it
        before sharing the package).
    license : str
        SPDX identifier of the licence of the weights.
    weights : str or sequence of str
        ``"pytorch_state_dict"`` and/or ``"torchscript"``.
    test : bool
        Run ``bioimageio.core``'s test (the test input through the package's every
        weight format, compared with the test output; inference at other sizes) and
        refuse to write a package that fails it.
    overwrite : bool
        Replace an existing file at ``out``.
    seed : int
        Seed of the synthetic test image.

    Yields
    ------
    Progress
        ``phase="export"``: test tensors, weights, package, bioimage.io test.

    Returns
    -------
    BioimageioExport
        The package, its rdf and the test verdict.

    Raises
    ------
    InputError
        For a bad option, a test image that does not fit the model, or missing
        ``bioimageio.spec`` / ``bioimageio.core``.
    ModelFileError
        For a missing or corrupted model.
    OutputError
        If ``out`` exists (without ``overwrite``), the network cannot be traced
        faithfully, the description is invalid or the package fails its test; nothing
        is left at ``out`` then.
    """
    import tifffile
    import torch

    from decrappify.models.store import count_parameters, load_model

    start = time.perf_counter()
    formats = parse_weight_formats(weights)
    target = _check_target(Path(out), overwrite)
    spec_version = _spec_version(test)
    loaded = load_model(model)
    net, info = loaded.net.eval(), loaded.info
    geometry = _geometry(net)
    total = 4 if test else 3
    yield Progress(phase="export", step=0, total=total, message="test tensors")
    raw, test_source = make_test_input(test_image, info, geometry, seed)
    normalised = normalised_input(raw, info)
    with torch.no_grad():
        expected = net(torch.from_numpy(normalised[None])).numpy().astype(np.float32)
    work = target.with_name(f".{target.name}.partial")
    try:
        _remove(work)
        work.mkdir()
        np.save(work / "test_input.npy", raw[None])
        np.save(work / "test_output.npy", expected)
        for sample, data in (("input", raw[0] if len(raw) == 1 else raw), ("output", expected)):
            tifffile.imwrite(
                work / f"sample_{sample}.tif", data.squeeze(), photometric="minisblack"
            )
        write_cover(work / "cover.png", raw[raw.shape[0] // 2], expected[0, 0], geometry.scale)
        yield Progress(phase="export", step=1, total=total, message="weights")
        _write_weights(net, normalised, formats, work, geometry, Path(model))
        yield Progress(phase="export", step=2, total=total, message="package")
        title = package_name(name, _model_name(Path(model)), geometry.scale)
        text = description or _default_description(info, geometry)
        (work / "README.md").write_text(
            readme_text(
                info=info,
                name=title,
                description=text,
                geometry=geometry,
                test_source=test_source,
                weight_formats=formats,
            ),
            encoding="utf-8",
        )
        files = PackageFiles({p.name: _sha256(p) for p in work.iterdir() if p.is_file()})
        content = rdf_content(
            info=info,
            name=title,
            description=text,
            authors=list(authors) if authors else ["decrappify user"],
            license=license,
            files=files,
            geometry=geometry,
            weight_formats=formats,
            torch_version=torch.__version__.split("+")[0],
            parameter_count=count_parameters(net),
            test_source=test_source,
            format_version=spec_version,
        )
        package = _package(content, work, target)
        status, checks = None, []
        if test:
            yield Progress(phase="export", step=3, total=total, message="bioimageio test")
            status, checks = _bioimageio_test(package, target)
        os.replace(package, target)
    except OSError as err:
        raise OutputError(f"{target}: cannot write the package ({err.strerror or err})") from err
    finally:
        _remove(work)
    yield Progress(phase="export", step=total, total=total, message=target.name)
    return BioimageioExport(
        path=target,
        rdf=content,
        status=status,
        checks=checks,
        test_source=test_source,
        seconds=time.perf_counter() - start,
    )


def export_bioimageio(model: PathLike, out: PathLike, **kwargs: Any) -> BioimageioExport:
    """Run :func:`iter_export_bioimageio` to the end.

    Parameters
    ----------
    model : path
        The model.
    out : path
        The package (``.zip``).
    **kwargs
        As :func:`iter_export_bioimageio`.

    Returns
    -------
    BioimageioExport
        The package and its test verdict.
    """
    result = run_to_end(iter_export_bioimageio(model, out, **kwargs))
    assert result is not None
    return result


# --------------------------------------------------------------------------- checks


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


def _spec_version(test: bool) -> str:
    """Return the model spec version of bioimageio.spec (and check for bioimageio.core)."""
    try:
        from bioimageio.spec.model.v0_5 import ModelDescr
    except ImportError as err:
        raise InputError(
            f"--bioimageio: writing bioimage.io packages needs bioimageio.spec ({INSTALL_HINT})"
        ) from err
    if test:
        try:
            import bioimageio.core  # noqa: F401
        except ImportError as err:
            raise InputError(
                f"--bioimageio: testing the package needs bioimageio.core ({INSTALL_HINT}), "
                "or pass --no-test"
            ) from err
    return str(ModelDescr.implemented_format_version)


def _geometry(net: Any) -> Geometry:
    from decrappify.predict.network import model_handle
    from decrappify.predict.tile_geometry import tile_quantum

    handle = model_handle(net)
    step = tile_quantum(handle.scale, handle.multiple)
    # the smallest valid side whose output keeps a pixel between the two halos
    min_side = step * (2 * HALO // step + 1)
    return Geometry(
        scale=handle.scale,
        n_frames=handle.n_frames,
        min_side=min_side,
        step=step,
        halo=HALO * handle.scale,
    )


# --------------------------------------------------------------------------- weights


ENVIRONMENT = """\
name: decrappify
channels:
  - conda-forge
  - nodefaults
dependencies:
  - python>=3.10
  - pytorch>=2.2
  - pip
  - pip:
      - decrappify>={version}
"""


def _write_weights(
    net: Any,
    normalised: np.ndarray,
    formats: tuple[str, ...],
    work: Path,
    g: Geometry,
    model: Path,
) -> None:
    import torch

    from decrappify import __version__

    if "pytorch_state_dict" in formats:
        state = {k: v.detach().to("cpu").contiguous() for k, v in net.state_dict().items()}
        torch.save(state, work / "weights.pt")
        shutil.copyfile(Path(__file__).with_name("_bioimageio_arch.py"), work / "architecture.py")
        (work / "environment.yaml").write_text(ENVIRONMENT.format(version=__version__))
    if "torchscript" in formats:
        traced = _trace(net, torch.from_numpy(normalised[None]), g, model)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", TORCH_JIT_DEPRECATED, DeprecationWarning)
            torch.jit.save(traced, str(work / "weights_torchscript.pt"))


def _trace(net: Any, example: Any, g: Geometry, model: Path) -> Any:
    """Trace the whole network; refuse a trace that does not generalise to other sizes."""
    import torch

    with warnings.catch_warnings():
        # the tracer's warnings (shape-dependent Python code) are checked below instead
        warnings.simplefilter("ignore")
        with torch.no_grad():
            traced = torch.jit.trace(net, example, check_trace=False)
    rng = np.random.default_rng(0)
    h, w = example.shape[-2:]
    other = rng.random((2, g.n_frames, h + g.step, w + 2 * g.step), dtype=np.float32)
    for probe in (example, torch.from_numpy(other)):
        with torch.no_grad():
            ours, theirs = net(probe), traced(probe)
        diff = float((ours - theirs).abs().max()) if ours.shape == theirs.shape else np.inf
        if not diff <= TRACE_ATOL:
            raise OutputError(
                f"{model}: the traced TorchScript network differs from the network by "
                f"{diff:.3g} on a {tuple(probe.shape)} input; export with "
                "--weights pytorch_state_dict"
            )
    return traced


# --------------------------------------------------------------------------- bioimage.io


def _package(content: dict[str, Any], work: Path, target: Path) -> Path:
    """Validate the description against the spec and zip the package in ``work``."""
    from bioimageio.spec import ValidationContext, build_description, save_bioimageio_package
    from bioimageio.spec.model.v0_5 import ModelDescr

    context = ValidationContext(root=work, file_name="rdf.yaml", log_warnings=False)
    descr = build_description(content, context=context)
    if not isinstance(descr, ModelDescr):
        raise OutputError(
            f"{target}: the bioimage.io description is invalid: "
            f"{_first_error(descr.validation_summary)}"
        )
    package = work / "package.zip"
    with ValidationContext(log_warnings=False):
        try:
            save_bioimageio_package(descr, output_path=package)
        except ValueError as err:
            text = " ".join(str(err).split())[:300]
            raise OutputError(f"{target}: the packaged model is invalid: {text}") from err
    return package


def _bioimageio_test(package: Path, target: Path) -> tuple[str, list[tuple[str, str]]]:
    """Run ``bioimageio test`` on the package (CPU, like the test output); raise if it fails.

    bioimageio.core seeds numpy's and torch's global generators and sets torch's
    deterministic-algorithms flag; all three are put back afterwards.
    """
    import torch
    from bioimageio.core import test_description
    from bioimageio.spec import ValidationContext

    numpy_state = np.random.get_state()  # noqa: NPY002 (the legacy state it seeds)
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        with torch.random.fork_rng(devices=[]), ValidationContext(log_warnings=False):
            with warnings.catch_warnings():  # bioimageio.core loads TorchScript with torch.jit
                warnings.filterwarnings("ignore", TORCH_JIT_DEPRECATED, DeprecationWarning)
                summary = test_description(package, devices=["cpu"])
    finally:
        np.random.set_state(numpy_state)  # noqa: NPY002
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
    checks = [(str(d.name), str(d.status)) for d in summary.details]
    if summary.status != "passed":
        raise OutputError(
            f"{target}: the package fails bioimageio.core's test: {_first_error(summary)}"
        )
    return str(summary.status), checks


def _first_error(summary: Any) -> str:
    for detail in summary.details:
        for error in detail.errors:
            loc = ".".join(str(part) for part in error.loc)
            text = " ".join(str(error.msg).split())[:300]
            return f"{detail.name}: {loc + ': ' if loc else ''}{text}"
    return f"status {summary.status}"


def _model_name(path: Path) -> str:
    """``em_x4`` for ``em_x4.safetensors``; the run's name for a run's ``RUN/model`` folder."""
    path = path.resolve()
    return path.parent.name if path.stem == "model" else path.stem


def _default_description(info: Any, g: Geometry) -> str:
    planes = "" if g.n_frames == 1 else f" from {g.n_frames} neighbouring planes"
    text = (
        f"decrappify x{g.scale} super-resolution{planes}: a U-Net generator trained with the "
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
