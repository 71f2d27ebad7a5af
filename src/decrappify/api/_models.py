"""Trained models outside training and prediction: copying a model, freeing its device."""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path

from decrappify.devices import release_device_memory
from decrappify.events import Progress

__all__ = ["iter_copy_model", "release_device_memory"]


def iter_copy_model(
    source: str | Path, target: str | Path, *, overwrite: bool = False
) -> Generator[Progress, None, Path]:
    """Copy a model to a single ``.safetensors`` file or a model folder.

    The source is loaded (and so checked) before anything is written, and the copy is
    written atomically.

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
        The written model.

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
