"""Starting points that ship with decrappify: small pretrained generators, found by name.

Each is a single-file model (``<name>.safetensors``, the metadata of
:class:`~decrappify.config.model.ModelInfo` in its header, as
:func:`decrappify.models.save_model` writes it) installed with the package and found with
:mod:`importlib.resources`, so that it works offline and from a wheel:

* ``em-4x``: electron microscopy, 4x super-resolution, trained with the ``em`` crappifier;
* ``fluo-4x``: fluorescence, 4x super-resolution, ``fluorescence`` crappifier;
* ``fluo-denoise``: fluorescence denoising on the same grid (scale 1), Poisson and read
  noise over a wide range of photon budgets.

They are trained by ``tools/train_starting_points.py`` on data whose licence allows
sharing the weights (decrappify's own synthetic images, the CC0 DSB2018 / BBBC038
nuclei); each file records its data, licence and the command that made it under
``training.provenance`` (``decrappify info em-4x``).

``decrappify train`` fine-tunes from the one that matches the run (``--from auto``, the
default; :func:`decrappify.train.start.choose_start`), ``decrappify predict fluo-denoise
in.tif`` uses one directly: wherever a model path is read, the name of a starting point
stands for its file (:func:`resolve_model_path`). Pure: no torch.
"""

from __future__ import annotations

import atexit
import json
from contextlib import ExitStack
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from decrappify.errors import InputError, ModelFileError

__all__ = [
    "AUTO",
    "NONE",
    "STARTING_POINTS",
    "StartingPoint",
    "crappifier_modality",
    "read_header_info",
    "resolve_model_path",
    "shipped",
    "starting_point_path",
]

#: ``start_from`` values that are not a model: pick the matching starting point, or none.
AUTO, NONE = "auto", "none"
#: safetensors header key of a single-file model's metadata (``models.store.METADATA_KEY``).
HEADER_KEY = "decrappify"


@dataclass(frozen=True)
class StartingPoint:
    """One shipped starting point: what it is for (its file holds the rest).

    Parameters
    ----------
    name : str
        What users type (``--from em-4x``, ``predict em-4x``).
    modality : str
        ``"em"`` or ``"fluorescence"``: the training data it suits.
    scale : int
        Its upsampling factor (1: same grid).
    summary : str
        One line for lists and menus.
    """

    name: str
    modality: str
    scale: int
    summary: str

    @property
    def file_name(self) -> str:
        """Its file inside the package."""
        return f"{self.name}.safetensors"


#: The starting points, by name.
STARTING_POINTS: dict[str, StartingPoint] = {
    sp.name: sp
    for sp in (
        StartingPoint("em-4x", "em", 4, "electron microscopy, 4x super-resolution"),
        StartingPoint("fluo-4x", "fluorescence", 4, "fluorescence, 4x super-resolution"),
        StartingPoint("fluo-denoise", "fluorescence", 1, "fluorescence denoising (same grid)"),
    )
}

_FILES = ExitStack()
atexit.register(_FILES.close)


def _folder() -> Any:
    """Where the starting points' files are: this package's data (an importlib Traversable)."""
    return resources.files(__name__)


def starting_point_path(name: str) -> Path:
    """The installed file of a starting point.

    Parameters
    ----------
    name : str
        A name of :data:`STARTING_POINTS`.

    Returns
    -------
    Path
        Its ``.safetensors`` file (extracted to a temporary file for the life of the
        process when the package is installed as a zip).

    Raises
    ------
    InputError
        For an unknown name (the message lists the known ones).
    ModelFileError
        When this installation lacks the file (built without its package data).
    """
    if name not in STARTING_POINTS:
        raise InputError(
            f"starting point {name!r}: unknown; the shipped ones are {', '.join(STARTING_POINTS)}"
        )
    resource = _folder() / STARTING_POINTS[name].file_name
    if not resource.is_file():
        raise ModelFileError(
            f"starting point {name!r}: its file {STARTING_POINTS[name].file_name} is missing "
            "from this installation of decrappify (reinstall it, or train your own model)"
        )
    if isinstance(resource, Path):
        return resource
    return Path(_FILES.enter_context(resources.as_file(resource)))


def shipped() -> list[StartingPoint]:
    """The starting points whose files this installation has, in :data:`STARTING_POINTS` order.

    Returns
    -------
    list of StartingPoint
        What ``--from`` and the napari menus offer.
    """
    files = _folder()
    return [sp for sp in STARTING_POINTS.values() if (files / sp.file_name).is_file()]


def resolve_model_path(model: str | Path) -> Path:
    """A model path as given, or the file of the starting point it names.

    An existing file or folder wins over a starting point of the same name.

    Parameters
    ----------
    model : str or Path
        A model folder, a ``.safetensors`` file, or a name of :data:`STARTING_POINTS`.

    Returns
    -------
    Path
        The path to read (not checked here when it is not a starting point's name).
    """
    path = Path(model)
    if path.exists() or str(model) not in STARTING_POINTS:
        return path
    return starting_point_path(str(model))


def read_header_info(path: str | Path) -> dict[str, Any]:
    """The raw metadata (JSON object) in a single-file model's header, without its tensors.

    Parameters
    ----------
    path : str or Path
        A ``.safetensors`` model file.

    Returns
    -------
    dict
        The metadata as stored (validate it with ``ModelInfo`` where needed).

    Raises
    ------
    ModelFileError
        When the file is not a readable single-file decrappify model.
    """
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            text = (f.metadata() or {}).get(HEADER_KEY)
        raw = json.loads(text) if text is not None else None
    except Exception as err:  # safetensors raises SafetensorError, OSError, ...
        raise ModelFileError(f"{path}: not a readable decrappify model file ({err})") from err
    if not isinstance(raw, dict):
        raise ModelFileError(f"{path}: no decrappify metadata in the file's header")
    return raw


def crappifier_modality(crappify: Any) -> str | None:
    """The modality a crappifier names: ``"em"``, ``"fluorescence"``, or None (it does not say).

    Parameters
    ----------
    crappify : CrappifyConfig, dict, str or None
        The run's crappifier (a preset name, a config or its dict; None: real pairs).

    Returns
    -------
    str or None
        From the crappifier's name: presets ``em*`` are EM, ``fluo*`` fluorescence; a
        fitted or custom config, or real pairs, say nothing.
    """
    if crappify is None:
        return None
    if isinstance(crappify, str):
        name: Any = crappify
    elif isinstance(crappify, dict):
        name = crappify.get("name")
    else:
        name = getattr(crappify, "name", None)
    if not isinstance(name, str):
        return None
    if name.startswith("em"):
        return "em"
    if name.startswith("fluo"):
        return "fluorescence"
    return None
