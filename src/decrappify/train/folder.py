"""The run folder: its files, the checks before a run starts or resumes, its first files.

A run folder holds ``train.yaml`` (the resolved config), ``data.json`` (the training
data summary), ``log.csv``, ``curves.png``, ``model/``, ``checkpoints/`` and
``gen_outputs.zarr``. A new run refuses a folder that holds another run; a resumed
run refuses a config that differs from the run's, except in :data:`RESUMABLE_CHANGES`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from decrappify.config.train import TrainConfig
from decrappify.errors import InputError, OutputError
from decrappify.io.atomic import atomic_write_text

__all__ = [
    "CHECKPOINTS_NAME",
    "CONFIG_NAME",
    "CURVES_NAME",
    "DATA_NAME",
    "LOG_NAME",
    "MODEL_NAME",
    "OUTPUTS_NAME",
    "RESUMABLE_CHANGES",
    "check_run_dir",
    "config_differences",
    "strip_sources",
    "write_start_files",
]

#: Files and folders of a run folder.
CONFIG_NAME = "train.yaml"
DATA_NAME = "data.json"
LOG_NAME = "log.csv"
CURVES_NAME = "curves.png"
MODEL_NAME = "model"
CHECKPOINTS_NAME = "checkpoints"
OUTPUTS_NAME = "gen_outputs.zarr"

#: Settings that may change when a run is resumed (they do not change the numbers on
#: the CPU, or they are where the run executes).
RESUMABLE_CHANGES = ("device", "num_threads", "preview_every", "data.num_workers")


def check_run_dir(run_dir: Path, config: TrainConfig, *, resume: bool) -> None:
    """Refuse a folder that cannot hold this run (a file, another run, another config).

    Raises
    ------
    OutputError
        ``run_dir`` is a file, holds a run and ``resume`` is False, or holds training
        files without a config.
    InputError
        ``resume`` with a config that differs from the run's.
    """
    if run_dir.exists() and not run_dir.is_dir():
        raise OutputError(f"{run_dir}: expected a run folder, got a file")
    saved = run_dir / CONFIG_NAME
    if saved.is_file():
        if not resume:
            raise OutputError(
                f"{run_dir}: already holds a training run ({CONFIG_NAME}); pass "
                "resume=True (--resume) to continue it or choose a new folder"
            )
        previous = TrainConfig.from_yaml(saved)
        diff = config_differences(previous, config)
        if diff:
            shown = "; ".join(diff[:3]) + (f"; and {len(diff) - 3} more" if len(diff) > 3 else "")
            raise InputError(
                f"{saved}: cannot resume with a different config ({shown}); use the run's "
                "config or a new folder"
            )
    elif run_dir.is_dir() and any(
        (run_dir / n).exists() for n in (CHECKPOINTS_NAME, MODEL_NAME, LOG_NAME)
    ):
        raise OutputError(
            f"{run_dir}: holds training files but no {CONFIG_NAME}; choose a new folder"
        )


def write_start_files(run_dir: Path, config: TrainConfig, data_summary: dict[str, Any]) -> None:
    """Create the folder of a new run with its ``train.yaml`` and ``data.json``."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"{run_dir}: cannot create the run folder ({err})") from err
    atomic_write_text(run_dir / CONFIG_NAME, config.to_yaml())
    atomic_write_text(run_dir / DATA_NAME, json.dumps(data_summary, indent=1, default=str))


def config_differences(old: TrainConfig, new: TrainConfig) -> list[str]:
    """List the settings that differ between two configs, except those a resume may change.

    Parameters
    ----------
    old, new : TrainConfig
        The run's config and the one given now.

    Returns
    -------
    list of str
        ``"<dotted key>: <old> in the run, <new> now"`` for each difference.
    """
    a = _flatten(old.resolved().model_dump(mode="json"))
    b = _flatten(new.resolved().model_dump(mode="json"))
    out = []
    for key in sorted(set(a) | set(b)):
        if key in RESUMABLE_CHANGES or any(key.startswith(k + ".") for k in RESUMABLE_CHANGES):
            continue
        if a.get(key) != b.get(key):
            out.append(f"{key}: {a.get(key)!r} in the run, {b.get(key)!r} now")
    return out


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict) and tree:
        out: dict[str, Any] = {}
        for k, v in tree.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): tree}


def strip_sources(inputs: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """Keep the shape and dtype of each training image (what a resume must match)."""
    return [(tuple(i["shape"]), i["dtype"]) for i in inputs]
