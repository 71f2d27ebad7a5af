"""bioimage.io's own tools on a package: the spec validates and zips it, core runs its test.

``bioimageio.spec`` and ``bioimageio.core`` are optional (``decrappify[export]``); they are
imported here only, and a set of versions known to fail is refused with the fix.
"""

from __future__ import annotations

import warnings
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from decrappify.errors import InputError, OutputError

#: Installing the optional dependencies.
INSTALL_HINT = "pip install 'decrappify[export]'"
#: torch's notice that TorchScript is deprecated for torch.export, which bioimage.io cannot
#: read yet (TorchScript is the PyTorch format deepImageJ and bioimageio.core run).
TORCH_JIT_DEPRECATED = r"`torch\.jit\.\w+` is deprecated"


def spec_version(test: bool) -> str:
    """Return the model spec version the installed ``bioimageio.spec`` writes.

    Also checks that ``bioimageio.core`` is there when the package is to be tested, and
    that ``bioimageio.spec`` works with the installed pydantic.
    """
    try:
        from bioimageio.spec.model.v0_5 import ModelDescr
    except ImportError as err:
        raise InputError(
            f"--bioimageio: writing bioimage.io packages needs bioimageio.spec ({INSTALL_HINT})"
        ) from err
    check_versions()
    if test:
        try:
            import bioimageio.core  # noqa: F401
        except ImportError as err:
            raise InputError(
                f"--bioimageio: testing the package needs bioimageio.core ({INSTALL_HINT}), "
                "or pass --no-test"
            ) from err
    return str(ModelDescr.implemented_format_version)


def check_versions() -> None:
    """Refuse bioimageio.spec before 0.5.14.3 beside pydantic 2.14 or newer.

    pydantic 2.14 made a wrong call in those spec versions an error, so they reject every
    model package (``'index_key' is expected to be an integer or a string``); the newest
    bioimageio.core (0.11) still requires spec 0.5.12.
    """
    spec, pydantic = _version("bioimageio.spec"), _version("pydantic")
    if spec < (0, 5, 14, 3) and pydantic >= (2, 14):
        raise InputError(
            f"--bioimageio: bioimageio.spec {metadata.version('bioimageio.spec')} cannot "
            f"describe any model with pydantic {metadata.version('pydantic')} (fixed in "
            "bioimageio.spec 0.5.14.3); install a pydantic that works with it: "
            "pip install 'pydantic<2.14'"
        )


def package(content: dict[str, Any], work: Path, target: Path) -> Path:
    """Validate the description against the spec and zip the package in ``work``."""
    from bioimageio.spec import ValidationContext, build_description, save_bioimageio_package
    from bioimageio.spec.model.v0_5 import ModelDescr

    context = ValidationContext(root=work, file_name="rdf.yaml", log_warnings=False)
    descr = build_description(content, context=context)
    if not isinstance(descr, ModelDescr):
        error = first_error(descr.validation_summary)
        if content.get("maintainers") and "Name or service not known" in error:
            raise OutputError(
                f"{target}: bioimageio.spec looks each --github-user up on api.github.com, "
                f"which cannot be reached from here ({error}); export where GitHub is "
                "reachable, or without --github-user and --maintainer"
            )
        raise OutputError(f"{target}: the bioimage.io description is invalid: {error}")
    zipped = work / "package.zip"
    with ValidationContext(log_warnings=False):
        try:
            save_bioimageio_package(descr, output_path=zipped)
        except ValueError as err:
            text = " ".join(str(err).split())[:300]
            raise OutputError(f"{target}: the packaged model is invalid: {text}") from err
    return zipped


def bioimageio_test(package: Path, target: Path) -> tuple[str, list[tuple[str, str]]]:
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
            f"{target}: the package fails bioimageio.core's test: {first_error(summary)}"
        )
    return str(summary.status), checks


def first_error(summary: Any) -> str:
    """Return the first error of a bioimageio validation summary, on one line."""
    for detail in summary.details:
        for error in detail.errors:
            loc = ".".join(str(part) for part in error.loc)
            text = " ".join(str(error.msg).split())[:300]
            return f"{detail.name}: {loc + ': ' if loc else ''}{text}"
    return f"status {summary.status}"


def _version(distribution: str) -> tuple[int, ...]:
    parts = []
    for piece in metadata.version(distribution).split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)
