"""The run folder and what a run returns: file names, results, data streams, config checks.

- the files of a run folder (:data:`CONFIG_NAME` ...);
- :class:`TrainResult`, what :func:`decrappify.train.iter_train` returns, and
  :func:`result_from_state`;
- :class:`KeyBatches`: the training batches of a phase as a pure function of the step;
- :func:`critic_loss`, :func:`steps_done`, :func:`config_differences`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import Sampler

from decrappify.config.train import TrainConfig
from decrappify.train.state import RunState

__all__ = [
    "CHECKPOINTS_NAME",
    "CONFIG_NAME",
    "CURVES_NAME",
    "DATA_NAME",
    "LOG_NAME",
    "MODEL_NAME",
    "OUTPUTS_NAME",
    "RESUMABLE_CHANGES",
    "KeyBatches",
    "TrainResult",
    "config_differences",
    "critic_loss",
    "result_from_state",
    "steps_done",
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


@dataclass
class TrainResult:
    """What a finished training run returns.

    Parameters
    ----------
    run_dir : Path
        The run folder.
    model_path : Path
        The best generator (``RUN_DIR/model``), loadable with
        :func:`decrappify.models.load_model`.
    metrics : dict of str to float
        Validation ``psnr`` / ``ssim`` (normalised) of the best generator.
    baseline : dict of str to float
        The baseline's ``psnr`` / ``ssim`` on the same crops.
    best : dict
        Where the best generator comes from (``phase``, ``cycle``, ``step``).
    steps : dict of str to int
        Steps run per phase (summed over cycles; patches for ``save_outputs``).
    history : list of dict
        Validation results and notes, in order.
    seconds : float
        Training time over all sessions.
    already_finished : bool
        The run was complete before this call (resume of a finished run).
    baseline_name : str
        What the baseline is: ``"bicubic"``, or ``"input"`` (the input itself) at scale 1.
    """

    run_dir: Path
    model_path: Path
    metrics: dict[str, float]
    baseline: dict[str, float]
    best: dict[str, Any]
    steps: dict[str, int]
    history: list[dict[str, Any]]
    seconds: float
    already_finished: bool = False
    baseline_name: str = "bicubic"

    @property
    def self_check(self) -> dict[str, Any] | None:
        """The model against classical methods (:mod:`decrappify.metrics.selfcheck`), or None."""
        return history_record(self.history, "self_check")

    @property
    def start(self) -> dict[str, Any] | None:
        """Where the generator started (:mod:`decrappify.train.start`), or None."""
        return history_record(self.history, "start")

    @property
    def gain(self) -> dict[str, float]:
        """Improvement of the model over the baseline (``psnr`` in dB, ``ssim``)."""
        return {k: self.metrics[k] - self.baseline[k] for k in self.metrics if k in self.baseline}


class KeyBatches(Sampler):
    """Batches of sample keys for one data stream, a pure function of the step.

    Step ``s`` of a stream takes samples ``s * batch_size ... s * batch_size +
    batch_size - 1``; sample ``c`` is the key ``(base + c // n, c % n)`` of a
    :class:`~decrappify.data.dataset.PairDataset` with ``n`` samples per epoch, where
    ``base`` separates the streams. A resumed run draws exactly the same batches.

    Parameters
    ----------
    stream : int
        Stream number (one per phase and purpose).
    cycle : int
        Cycle of phases 2-4.
    samples_per_epoch : int
        The dataset's length.
    batch_size : int
        Samples per batch.
    start : int
        First step.
    stop : int or None
        End step (exclusive); None for an endless stream.
    """

    def __init__(
        self,
        stream: int,
        cycle: int,
        samples_per_epoch: int,
        batch_size: int,
        *,
        start: int = 0,
        stop: int | None = None,
    ) -> None:
        self.base = (int(stream) * 64 + int(cycle)) << 32
        self.n = int(samples_per_epoch)
        self.batch_size = int(batch_size)
        self.start, self.stop = int(start), stop

    def keys(self, step: int) -> list[tuple[int, int]]:
        """Return the keys of one step's batch.

        Parameters
        ----------
        step : int
            Step number.

        Returns
        -------
        list of (int, int)
            ``(epoch, index)`` keys.
        """
        first = step * self.batch_size
        return [
            (self.base + c // self.n, c % self.n) for c in range(first, first + self.batch_size)
        ]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        step = self.start
        while self.stop is None or step < self.stop:
            yield self.keys(step)
            step += 1


def critic_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """Compute the critic's loss: mean BCE of real (label 1) and generated (label 0) logits.

    Parameters
    ----------
    logits_real, logits_fake : torch.Tensor
        Critic outputs on real HR and generated images.

    Returns
    -------
    torch.Tensor
        ``(BCE(real, 1) + BCE(fake, 0)) / 2``; ``ln 2`` at chance.
    """
    real = F.binary_cross_entropy_with_logits(logits_real, torch.ones_like(logits_real))
    fake = F.binary_cross_entropy_with_logits(logits_fake, torch.zeros_like(logits_fake))
    return (real + fake) / 2


def steps_done(state: RunState) -> dict[str, int]:
    """Count the steps run per phase, summed over cycles.

    Parameters
    ----------
    state : RunState
        The run state.

    Returns
    -------
    dict of str to int
        Phase name to steps (patches for ``save_outputs``).
    """
    out: dict[str, int] = {}
    for key, value in state.counts.items():
        name = key.split("/")[0]
        out[name] = out.get(name, 0) + int(value)
    return out


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


def strip_sources(inputs: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(tuple(i["shape"]), i["dtype"]) for i in inputs]


def result_from_state(
    state: RunState,
    run_dir: Path,
    model_path: Path,
    *,
    already_finished: bool,
    baseline_name: str = "bicubic",
) -> TrainResult:
    """Build the :class:`TrainResult` of a run from its state.

    Parameters
    ----------
    state : RunState
        The run state.
    run_dir : Path
        The run folder.
    model_path : Path
        The saved model.
    already_finished : bool
        Whether the run was finished before this call.
    baseline_name : str
        What the baseline is (``"input"`` at scale 1).

    Returns
    -------
    TrainResult
        The result.
    """
    return TrainResult(
        run_dir=run_dir,
        model_path=model_path,
        metrics={k: state.best[k] for k in ("psnr", "ssim") if k in state.best},
        baseline=dict(state.baseline),
        best={k: state.best.get(k) for k in ("phase", "cycle", "step")},
        steps=steps_done(state),
        history=list(state.history),
        seconds=state.elapsed,
        already_finished=already_finished,
        baseline_name=baseline_name,
    )
