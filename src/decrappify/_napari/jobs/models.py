"""Models the widgets know: the recent models list and a run's model.

The recent models list is a small JSON file in the user's config folder
(``$DECRAPPIFY_CONFIG_DIR``, else the platform's, via ``platformdirs``).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from decrappify import api
from decrappify.io import atomic_write_text

#: Environment variable naming the folder of decrappify's napari settings (tests, portable
#: installs); default: the platform's user config folder.
CONFIG_DIR_ENV = "DECRAPPIFY_CONFIG_DIR"
#: File of the recent models list, in :func:`user_config_dir`.
RECENT_MODELS_NAME = "recent_models.json"
#: Most recent models remembered.
MAX_RECENT_MODELS = 10
#: The best generator inside a training run folder (``decrappify.train.folder.MODEL_NAME``).
RUN_MODEL_NAME = "model"


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
    if not Path(path).exists() and str(path) in {sp.name for sp in api.starting_points()}:
        return recent_models(folder)  # a shipped starting point is always listed
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
