"""Run state and checkpoints: tensors in safetensors, everything else in JSON, never pickle.

``RUN_DIR/checkpoints/`` holds the last state of a run:

- ``tensors-<n>.safetensors``: the generator, the critic, the best generator so far, the
  tensors of the optimisers' states and the torch RNG states, under prefixed names
  (``generator.``, ``critic.``, ``best.``, ``optim.<name>.``, ``rng.``);
- ``state.json``: the :class:`RunState` (phase, cycle, step, fixed step counts, history,
  best score, early-stopping and switching state, the non-tensor parts of the
  optimisers and gradient scalers) and the name of its tensor file.

A checkpoint is written in three atomic moves: the tensor file under a new name, then
``state.json`` (the commit point, naming that file), then older tensor files are
deleted. A crash at any moment leaves the previous or the new checkpoint whole.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from decrappify.errors import ModelFileError, OutputError
from decrappify.io.atomic import atomic_write_text, remove_path
from decrappify.models.store import read_tensors, save_tensors

#: Layout version of ``state.json``.
STATE_VERSION = 1
#: Name of the JSON file of a checkpoint.
STATE_NAME = "state.json"
#: Metadata key of the tensor file holding the checkpoint number.
CHECKPOINT_KEY = "decrappify_checkpoint"


@dataclass
class RunState:
    """Everything of a run that is not a tensor (JSON round trip).

    Parameters
    ----------
    phase : str
        Phase to run or continue (``"pretrain_generator"``, ``"save_outputs"``,
        ``"pretrain_critic"``, ``"gan"``, ``"done"``).
    cycle : int
        Cycle of phases 2-4 (0-based).
    step : int
        Steps done in the current phase.
    counts : dict of str to int
        Step counts fixed so far, keyed ``"<phase>"`` or ``"<phase>/<cycle>"``.
    frozen_steps : int or None
        Steps of phase 1 with the encoder frozen, once fixed.
    elapsed : float
        Seconds of training done (over all sessions).
    overhead : float
        Measured seconds of one validation + checkpoint (for time budgets).
    log_rows : int
        Data rows of ``log.csv`` at this checkpoint.
    history : list of dict
        Validation results and notes.
    baseline : dict of str to float
        Bicubic scores on the validation crops.
    best : dict
        The best generator so far: ``value`` of the watched metric, its ``psnr`` /
        ``ssim``, and where it was (``phase``, ``cycle``, ``step``).
    early : dict
        :class:`~decrappify.train.schedule.EarlyStopping` state of the GAN phase.
    critic_stop : dict
        :class:`~decrappify.train.schedule.ThresholdStop` state of critic pretraining.
    critic_batches : int
        Critic batches drawn in the current GAN phase.
    critic_steps : int
        Critic steps done in the current GAN phase (all of them).
    gan_improved : bool
        Whether the current GAN phase beat the generator it started from.
    skip_gan : bool
        The time budget cannot pay for the critic and GAN phases: they are skipped.
    optimizers : dict
        Non-tensor state of each optimiser (param groups, scalars).
    scalers : dict
        State of the fp16 gradient scalers.
    inputs : list of dict
        Source, shape and dtype of each training image (checked on resume).
    finished : bool
        The run is complete.
    checkpoint : int
        Number of this checkpoint (increases by one each write).
    tensors : str
        Name of the tensor file of this checkpoint.
    format : int
        :data:`STATE_VERSION`.
    """

    phase: str = "pretrain_generator"
    cycle: int = 0
    step: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    frozen_steps: int | None = None
    elapsed: float = 0.0
    overhead: float = 0.0
    log_rows: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    baseline: dict[str, float] = field(default_factory=dict)
    best: dict[str, Any] = field(default_factory=dict)
    early: dict[str, Any] = field(default_factory=dict)
    critic_stop: dict[str, Any] = field(default_factory=dict)
    critic_batches: int = 0
    critic_steps: int = 0
    gan_improved: bool = False
    skip_gan: bool = False
    optimizers: dict[str, Any] = field(default_factory=dict)
    scalers: dict[str, Any] = field(default_factory=dict)
    inputs: list[dict[str, Any]] = field(default_factory=list)
    finished: bool = False
    checkpoint: int = 0
    tensors: str = ""
    format: int = STATE_VERSION

    def to_json(self) -> str:
        """Serialise (non-finite floats are written as None).

        Returns
        -------
        str
            JSON text.
        """
        return json.dumps(_finite(asdict(self)), indent=1, allow_nan=False)

    @classmethod
    def from_json(cls, text: str, source: str | Path) -> RunState:
        """Parse :meth:`to_json` output.

        Parameters
        ----------
        text : str
            JSON text.
        source : str or Path
            Where it came from, for messages.

        Returns
        -------
        RunState
            The state.

        Raises
        ------
        ModelFileError
            If the text is not a run state this release reads.
        """
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as err:
            raise ModelFileError(f"{source}: run state is not valid JSON ({err})") from err
        if not isinstance(raw, dict) or raw.get("format") != STATE_VERSION:
            got = raw.get("format") if isinstance(raw, dict) else type(raw).__name__
            raise ModelFileError(
                f"{source}: expected a run state of format {STATE_VERSION}, got {got!r}"
            )
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ModelFileError(f"{source}: unknown run state fields {unknown}")
        return cls(**raw)


def _finite(value: Any) -> Any:
    """Replace non-finite floats by None, recursively (strict JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def flatten_optimizer(
    state_dict: Mapping[str, Any], prefix: str
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimiser's ``state_dict()`` into tensors and JSON.

    Parameters
    ----------
    state_dict : mapping
        ``optimizer.state_dict()``.
    prefix : str
        Prefix of the tensor names (``"optim.pretrain"``).

    Returns
    -------
    tensors : dict of str to torch.Tensor
        ``"<prefix>.<param index>.<key>"`` for every tensor of the per-parameter state.
    meta : dict
        ``param_groups`` and the non-tensor per-parameter entries (JSON-serialisable).
    """
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, entries in state_dict["state"].items():
        for key, value in entries.items():
            if torch.is_tensor(value):
                tensors[f"{prefix}.{index}.{key}"] = value
            else:
                scalars.setdefault(str(index), {})[key] = value
    groups = json.loads(json.dumps(state_dict["param_groups"]))
    return tensors, {"param_groups": groups, "scalars": scalars}


def unflatten_optimizer(
    tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any], prefix: str
) -> dict[str, Any]:
    """Rebuild an optimiser's ``state_dict()`` from :func:`flatten_optimizer` output.

    Parameters
    ----------
    tensors : mapping of str to torch.Tensor
        All the checkpoint's tensors (those under ``prefix`` are used).
    meta : mapping
        The JSON part.
    prefix : str
        The tensors' prefix.

    Returns
    -------
    dict
        For ``optimizer.load_state_dict``.
    """
    state: dict[int, dict[str, Any]] = {}
    start = prefix + "."
    for name, value in tensors.items():
        if name.startswith(start):
            index, key = name[len(start) :].split(".", 1)
            state.setdefault(int(index), {})[key] = value
    for index, entries in meta.get("scalars", {}).items():
        state.setdefault(int(index), {}).update(entries)
    return {"state": state, "param_groups": [dict(g) for g in meta["param_groups"]]}


def prefixed(state_dict: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Put a prefix on the names of a state dict.

    Parameters
    ----------
    state_dict : mapping of str to torch.Tensor
        For example ``module.state_dict()``.
    prefix : str
        Prefix without the dot.

    Returns
    -------
    dict of str to torch.Tensor
        ``"<prefix>.<name>"`` to tensor.
    """
    return {f"{prefix}.{k}": v for k, v in state_dict.items()}


def unprefixed(tensors: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Select the tensors under a prefix and strip it.

    Parameters
    ----------
    tensors : mapping of str to torch.Tensor
        All the checkpoint's tensors.
    prefix : str
        Prefix without the dot.

    Returns
    -------
    dict of str to torch.Tensor
        The matching entries, prefix removed.
    """
    start = prefix + "."
    return {k[len(start) :]: v for k, v in tensors.items() if k.startswith(start)}


def write_checkpoint(
    folder: str | Path, state: RunState, tensors: Mapping[str, torch.Tensor]
) -> Path:
    """Write a checkpoint atomically (tensor file, then ``state.json``, then clean up).

    ``state.checkpoint`` is incremented and ``state.tensors`` set to the new file.

    Parameters
    ----------
    folder : str or Path
        ``RUN_DIR/checkpoints``.
    state : RunState
        The run state (updated in place).
    tensors : mapping of str to torch.Tensor
        Every tensor of the checkpoint (any device).

    Returns
    -------
    Path
        The ``state.json`` written.

    Raises
    ------
    OutputError
        If the folder cannot be written.
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"{folder}: cannot create the checkpoint folder ({err})") from err
    number = state.checkpoint + 1
    name = f"tensors-{number:06d}.safetensors"
    save_tensors(folder / name, tensors, {CHECKPOINT_KEY: str(number)})
    state.checkpoint, state.tensors = number, name
    path = atomic_write_text(folder / STATE_NAME, state.to_json() + "\n")
    for old in folder.glob("tensors-*.safetensors"):
        if old.name != name:
            remove_path(old)
    return path


def remove_stale_files(run_dir: str | Path, checkpoints: str | Path) -> list[str]:
    """Clean up what a run killed in the middle of a write left behind (before a resume).

    * temporaries (``.<name>.partial``) in the run folder and its ``checkpoints/``, and
      the ``.tmpXXXXXX`` files safetensors' own atomic writer leaves when killed;
    * a previous model or output moved aside for replacement (``.<name>.old``,
      ``.<name>.replaced``): put back when its replacement never arrived, else deleted;
    * tensor files of ``checkpoints/`` that ``state.json`` does not name (a checkpoint
      whose commit never happened, or one not yet deleted after the next).

    Parameters
    ----------
    run_dir : str or Path
        The run folder.
    checkpoints : str or Path
        Its checkpoint folder.

    Returns
    -------
    list of str
        What was removed or restored, relative to ``run_dir``.
    """
    run_dir, checkpoints = Path(run_dir), Path(checkpoints)
    done: list[str] = []
    for folder in (run_dir, checkpoints):
        if not folder.is_dir():
            continue
        for entry in sorted(folder.iterdir()):
            name = entry.name
            if not name.startswith("."):
                continue
            if name.endswith(".partial") or name.startswith(".tmp"):
                remove_path(entry)
                done.append(str(entry.relative_to(run_dir)))
            elif name.endswith((".old", ".replaced")):
                target = folder / name[1:].rsplit(".", 1)[0]
                if os.path.lexists(target):
                    remove_path(entry)
                else:
                    os.replace(entry, target)
                done.append(str(entry.relative_to(run_dir)))
    keep = None
    if (checkpoints / STATE_NAME).is_file():
        try:
            keep = RunState.from_json(
                (checkpoints / STATE_NAME).read_text(encoding="utf-8"), checkpoints / STATE_NAME
            ).tensors
        except (OSError, ModelFileError):
            return done  # an unreadable state: leave the files for read_checkpoint to judge
    for tensors in sorted(checkpoints.glob("tensors-*.safetensors")):
        if tensors.name != keep:
            remove_path(tensors)
            done.append(str(tensors.relative_to(run_dir)))
    return done


def has_checkpoint(folder: str | Path) -> bool:
    """Whether a checkpoint folder holds a committed checkpoint.

    Parameters
    ----------
    folder : str or Path
        ``RUN_DIR/checkpoints``.

    Returns
    -------
    bool
        True when ``state.json`` exists.
    """
    return (Path(folder) / STATE_NAME).is_file()


def read_checkpoint(folder: str | Path) -> tuple[RunState, dict[str, torch.Tensor]]:
    """Read the last checkpoint.

    Parameters
    ----------
    folder : str or Path
        ``RUN_DIR/checkpoints``.

    Returns
    -------
    state : RunState
        The run state.
    tensors : dict of str to torch.Tensor
        Every tensor (CPU).

    Raises
    ------
    ModelFileError
        If the checkpoint is missing, unreadable or its two files do not match.
    """
    folder = Path(folder)
    path = folder / STATE_NAME
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ModelFileError(f"{path}: cannot read the run state ({err})") from err
    state = RunState.from_json(text, path)
    tensors, meta = read_tensors(folder / state.tensors)
    if meta.get(CHECKPOINT_KEY) != str(state.checkpoint):
        raise ModelFileError(
            f"{folder / state.tensors}: expected the tensors of checkpoint {state.checkpoint}, "
            f"got those of checkpoint {meta.get(CHECKPOINT_KEY)!r}"
        )
    return state, tensors


def history_record(history: list[dict[str, Any]], key: str) -> dict[str, Any] | None:
    """Find the latest record under ``key`` in a run's history (``"start"``, ``"self_check"``).

    Parameters
    ----------
    history : list of dict
        The run's history.
    key : str
        The record's key in its history entry.

    Returns
    -------
    dict or None
        The record, or None when no entry has one.
    """
    for entry in reversed(history):
        if isinstance(entry.get(key), dict):
            return entry[key]
    return None
