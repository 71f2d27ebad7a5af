"""The parts of one training session, built from the config and the run folder.

:func:`open_parts` checks the run folder, builds the data, the networks and the run
state (new, or read back from the last checkpoint), and wires the parts that each do one
job: the :class:`~.clock.Clock` (time and budget), the :class:`~.report.Reporter`
(events, history, ``log.csv``), the :class:`~.checkpoints.CheckpointStore` and the
:class:`~.result.ModelWriter`. :mod:`.nogan` hands each phase the parts it uses.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from decrappify.config.train import TrainConfig
from decrappify.devices import resolve_device
from decrappify.errors import InputError
from decrappify.metrics.baselines import baseline_label
from decrappify.train.checkpoints import CheckpointStore, open_state
from decrappify.train.clock import Clock, phase_budgets
from decrappify.train.distributed import Ranks
from decrappify.train.folder import CHECKPOINTS_NAME, check_run_dir, write_start_files
from decrappify.train.nets import Nets
from decrappify.train.precision import Precision, resolve_amp
from decrappify.train.report import Reporter
from decrappify.train.result import ModelWriter
from decrappify.train.start import START_KEY, choose_start, load_start
from decrappify.train.state import RunState
from decrappify.train.streams import DataStreams

__all__ = ["Parts", "open_parts"]

log = logging.getLogger("decrappify")


@dataclass
class Parts:
    """The parts of a training session (each phase takes the ones it uses)."""

    config: TrainConfig
    run_dir: Path
    state: RunState
    nets: Nets
    data: DataStreams
    clock: Clock
    report: Reporter
    store: CheckpointStore
    model: ModelWriter
    resumed: bool


def open_parts(
    config: TrainConfig,
    hr_sources: Sequence[Any],
    run_dir: str | Path,
    lr_sources: Sequence[Any] | None,
    resume: bool,
    ranks: Ranks | None = None,
) -> Parts:
    """Check the inputs and the run folder, and build the parts of a training session.

    On several processes (``ranks``) each builds its parts; process 0 alone writes the
    run folder, and each process trains on the GPU of its local rank.

    Raises
    ------
    InputError
        For a config that is not a :class:`TrainConfig`, a crappifier given with LR
        images (or neither), a scale that differs from the pairs', a config or images
        that differ from the run's on resume, or an unavailable device.
    OutputError
        If the folder holds another run, or cannot be written.
    """
    if not isinstance(config, TrainConfig):
        raise InputError(f"config: expected a TrainConfig, got {type(config).__name__}")
    cfg = config.resolved()
    run_dir = Path(run_dir)
    crappify = cfg.resolved_crappify()
    if lr_sources is not None and crappify is not None:
        raise InputError(
            "crappify: paired training (LR images given) uses the real LR images; set "
            "crappify to null (CLI: do not combine --lr with --preset/--crappify-config)"
        )
    if lr_sources is None and crappify is None:
        raise InputError(
            "crappify: null needs aligned LR images (lr_sources / --lr); give a preset "
            "or a crappify config to make them from the HR images"
        )
    ranks = ranks if ranks is not None else Ranks()
    ranks.share(cfg.batch_size)  # the global batch must split among the processes
    check_run_dir(run_dir, cfg, resume=resume)
    ranks.barrier()  # every process checked the folder before process 0 writes to it
    context = cfg.generator.context_warning(cfg.data.patch_size)
    if context:
        log.warning(context)
    device = resolve_device(cfg.device)
    if ranks.distributed and device.type == "cuda":
        device = torch.device("cuda", ranks.local)
    precision = Precision(device, resolve_amp(cfg.amp, device))
    channels_last = cfg.channels_last and device.type == "cuda"
    data = DataStreams(
        cfg,
        hr_sources,
        lr_sources,
        crappify,
        device=device,
        autocast=precision.autocast,
        channels_last=channels_last,
        ranks=ranks,
    )
    nets = Nets(cfg, device, precision, channels_last=channels_last, ranks=ranks)
    state, tensors = open_state(run_dir / CHECKPOINTS_NAME, resume=resume, inputs=data.inputs)
    resumed = state.checkpoint > 0
    start = None if resumed else choose_start(cfg)  # a misfit is refused before any file
    if resumed and not state.finished:
        nets.restore(tensors, state.scalers)
    elif not resumed and ranks.is_main:
        write_start_files(run_dir, cfg, data.summary)
    clock = Clock(cfg.time_budget, phase_budgets(cfg), elapsed_before=state.elapsed)
    report = Reporter(
        run_dir,
        state,
        clock,
        cycles=cfg.cycles,
        baseline_name=baseline_label(cfg.generator.scale),
        validation=data.validator is not None,
        keep_rows=state.log_rows if resumed else None,
        writes=ranks.is_main,
    )
    writes = ranks.is_main
    store = CheckpointStore(run_dir / CHECKPOINTS_NAME, nets, report, clock, tensors, writes=writes)
    model = ModelWriter(
        run_dir, cfg, nets, data.summary, data.normalization, crappify, clock, writes=writes
    )
    if start is not None:
        load_start(start, nets.G)
        report.note(f"generator start: {start.reason}", **{START_KEY: start.record()})
    return Parts(cfg, run_dir, state, nets, data, clock, report, store, model, resumed)
