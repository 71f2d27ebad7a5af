"""The checkpoint store of a run: what a checkpoint holds, writing it, and reading it back.

A checkpoint (:mod:`.state`: ``RUN_DIR/checkpoints/``, safetensors + JSON) holds the
networks, the best generator and the run's random state (:meth:`Nets.tensors
<decrappify.train.nets.Nets.tensors>`), the optimisers' states, the gradient scalers, the
rows of ``log.csv`` written so far, the training time and the run state.
:func:`open_state` starts a run state, or reads the last checkpoint to resume one;
:class:`CheckpointStore` writes checkpoints and gives the optimisers their saved state.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from decrappify.errors import InputError
from decrappify.train.clock import Clock
from decrappify.train.folder import strip_sources
from decrappify.train.nets import Nets
from decrappify.train.report import Reporter
from decrappify.train.state import (
    RunState,
    flatten_optimizer,
    has_checkpoint,
    read_checkpoint,
    unflatten_optimizer,
    write_checkpoint,
)

__all__ = ["CheckpointStore", "open_state"]


def open_state(
    folder: Path, *, resume: bool, inputs: list[dict[str, Any]]
) -> tuple[RunState, dict[str, torch.Tensor]]:
    """Start a run state, or read the last checkpoint's state and tensors to resume.

    Parameters
    ----------
    folder : Path
        ``RUN_DIR/checkpoints``.
    resume : bool
        Continue from the last checkpoint when there is one.
    inputs : list of dict
        Source, shape and dtype of each training image (a resumed run must have the
        same shapes and dtypes).

    Returns
    -------
    state : RunState
        The run state (``checkpoint`` > 0 when it was read from a checkpoint).
    tensors : dict of str to torch.Tensor
        The checkpoint's tensors (empty for a new run).

    Raises
    ------
    InputError
        When the training images differ from the run's.
    """
    if not (resume and has_checkpoint(folder)):
        return RunState(inputs=inputs), {}
    state, tensors = read_checkpoint(folder)
    if state.inputs and strip_sources(state.inputs) != strip_sources(inputs):
        raise InputError(
            f"{folder}: cannot resume with different training images "
            f"(the run used {len(state.inputs)} images of shapes "
            f"{[i['shape'] for i in state.inputs][:3]}..., got {len(inputs)} of shapes "
            f"{[i['shape'] for i in inputs][:3]}...)"
        )
    return state, tensors


class CheckpointStore:
    """Writes a run's checkpoints and hands the optimisers their saved state.

    Parameters
    ----------
    folder : Path
        ``RUN_DIR/checkpoints``.
    nets : Nets
        The networks, best generator, random state and scalers to save.
    report : Reporter
        Its ``log.csv`` is flushed and its row count saved.
    clock : Clock
        The training time saved.
    tensors : dict of str to torch.Tensor
        The tensors of the checkpoint the run resumed from (empty for a new run): the
        optimisers' saved states, until :meth:`release`.
    writes : bool
        Whether this process writes the checkpoints (process 0 of several).
    """

    def __init__(
        self,
        folder: Path,
        nets: Nets,
        report: Reporter,
        clock: Clock,
        tensors: dict[str, torch.Tensor],
        *,
        writes: bool = True,
    ) -> None:
        self.writes = writes
        self.folder = folder
        self.nets = nets
        self.report = report
        self.clock = clock
        self._resumed_from = tensors

    def save(
        self, state: RunState, optimizers: dict[str, torch.optim.Optimizer] | None = None
    ) -> None:
        """Write a checkpoint of the run as it is now (with the optimisers' states)."""
        if not self.writes:
            return
        tensors = self.nets.tensors()
        state.optimizers = {}
        for name, opt in (optimizers or {}).items():
            flat, meta = flatten_optimizer(opt.state_dict(), f"optim.{name}")
            tensors.update(flat)
            state.optimizers[name] = meta
        state.scalers = self.nets.precision.state()
        state.log_rows = self.report.rows
        state.elapsed = self.clock.elapsed()
        write_checkpoint(self.folder, state, tensors)

    def save_final(self, state: RunState) -> None:
        """Write the checkpoint of a finished run: its state alone (it is never trained further)."""
        if not self.writes:
            return
        state.optimizers, state.log_rows, state.elapsed = {}, self.report.rows, self.clock.elapsed()
        write_checkpoint(self.folder, state, self.nets.random.tensors())

    def load_optimizer(self, state: RunState, name: str, optimizer: torch.optim.Optimizer) -> None:
        """Give an optimiser the state the resumed checkpoint saved for it (if any)."""
        meta = state.optimizers.get(name)
        if meta is None or not self._resumed_from:
            return
        optimizer.load_state_dict(unflatten_optimizer(self._resumed_from, meta, f"optim.{name}"))

    def release(self) -> None:
        """Forget the resumed checkpoint's tensors (once the phase it was in has its optimisers)."""
        self._resumed_from = {}
