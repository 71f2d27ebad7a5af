"""The NoGAN schedule as a generator of progress events, with checkpoints and exact resume.

:func:`iter_train` runs the phases of fast.ai's decrappify / DeOldify / PSSR recipe:

1. ``pretrain_generator``: the generator alone, content loss, one-cycle AdamW,
   encoder frozen for a first part;
2. ``save_outputs``: its outputs on a sample of training patches go to
   ``RUN_DIR/gen_outputs.zarr`` with the matching HR patches (batch by batch);
3. ``pretrain_critic``: the critic learns to tell real HR patches from those outputs
   (BCE with logits) until its smoothed loss is below a threshold;
4. ``gan``: generator and critic together, adaptive switching, validation every few
   steps, early stopping at the inflection point, the best generator kept;

and repeats 2-4 for ``cycles``. Every step yields a :class:`~decrappify.events.Progress`
event; closing the generator stops the run at that step and leaves no partial file.

Reproducibility: training data are a function of ``(seed, stream, step)`` (see
:class:`KeyBatches`), the torch random state of the run is kept apart from the global
one (:class:`~decrappify.train.runtime.RunRandom`) and saved in every checkpoint with
the weights, the optimiser states and the step counts, so ``resume=True`` ends with the
same weights as an uninterrupted run on the CPU.
"""

from __future__ import annotations

import logging
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import Any

from decrappify.config.train import TrainConfig
from decrappify.errors import InputError, OutputError
from decrappify.events import Progress, run_to_end
from decrappify.io.atomic import partial_path, remove_path
from decrappify.train._phases import Run
from decrappify.train.run import (
    CHECKPOINTS_NAME,
    CONFIG_NAME,
    MODEL_NAME,
    OUTPUTS_NAME,
    KeyBatches,
    TrainResult,
    config_differences,
    result_from_state,
)
from decrappify.train.runtime import cpu_threads
from decrappify.train.state import STATE_NAME, RunState, remove_stale_files

__all__ = ["KeyBatches", "TrainResult", "iter_train", "train"]

log = logging.getLogger("decrappify")


def iter_train(
    config: TrainConfig,
    hr_sources: Sequence[Any],
    run_dir: str | Path,
    *,
    lr_sources: Sequence[Any] | None = None,
    resume: bool = False,
) -> Generator[Progress, None, TrainResult]:
    """Train a super-resolution generator with the NoGAN schedule.

    Parameters
    ----------
    config : TrainConfig
        The run's settings.
    hr_sources : sequence of Image, path or array
        High-resolution training images (2D or stacks; read lazily). The validation
        images are split off by image (``config.data.validation``).
    run_dir : str or Path
        Run folder: ``train.yaml`` (the resolved config), ``data.json`` (the training
        data summary), ``log.csv``, ``curves.png``, ``model/`` (the best generator),
        ``checkpoints/`` and ``gen_outputs.zarr``.
    lr_sources : sequence or None
        Aligned low-resolution images for paired training (``config.crappify`` must
        then be None).
    resume : bool
        Continue the run in ``run_dir`` from its last checkpoint (it must have been
        started with the same config and images). A finished run is not run again.

    Yields
    ------
    Progress
        One event per step: ``phase`` (with ``" c/n"`` appended for cycles when
        ``cycles > 1``), ``step`` / ``total`` (None while a time budget is being
        measured), ``losses``, ``metrics`` (validation ``psnr`` / ``ssim`` at
        checkpoints), ``preview`` (LR | prediction | HR of the first validation crop
        every ``preview_every`` steps and at checkpoints) and ``info`` (``cycle``,
        ``elapsed_s``, ``baseline`` ...).

    Returns
    -------
    TrainResult
        The model path, the best generator's validation metrics, the bicubic baseline,
        steps per phase and the history.

    Raises
    ------
    InputError
        For invalid inputs, a config that differs from the run's on resume, or an
        unavailable device.
    OutputError
        If ``run_dir`` already holds a run (without ``resume``) or cannot be written.
    """
    if resume:
        cleaned = remove_stale_files(run_dir, Path(run_dir) / CHECKPOINTS_NAME)
        if cleaned:
            log.info(f"{run_dir}: removed what an interrupted write left: {', '.join(cleaned)}")
        finished = _finished_result(config, Path(run_dir))
        if finished is not None:
            message = f"{run_dir}: this run is already finished; nothing to do"
            log.info(message)
            yield Progress(phase="done", step=0, total=0, message=message)
            return finished
    if not isinstance(config, TrainConfig):
        raise InputError(f"config: expected a TrainConfig, got {type(config).__name__}")
    with cpu_threads(config.num_threads):
        run = Run(config, hr_sources, run_dir, lr_sources, resume)
        try:
            if run.resumed:
                run.note(
                    f"resumed at {run.state.phase} step {run.state.step} (cycle "
                    f"{run.state.cycle + 1})"
                )
            yield from run.run()
            return run.finish()
        finally:
            run.log.close()
            remove_path(partial_path(run.run_dir / OUTPUTS_NAME))


def _finished_result(config: TrainConfig, run_dir: Path) -> TrainResult | None:
    """Return the result of a finished run in ``run_dir`` (None if it is not finished)."""
    state_file = run_dir / CHECKPOINTS_NAME / STATE_NAME
    if not state_file.is_file():
        return None
    state = RunState.from_json(state_file.read_text(encoding="utf-8"), state_file)
    if not state.finished:
        return None
    saved = run_dir / CONFIG_NAME
    diff = config_differences(TrainConfig.from_yaml(saved), config) if saved.is_file() else []
    if diff:
        raise InputError(f"{saved}: this finished run had a different config ({diff[0]})")
    model_path = run_dir / MODEL_NAME
    if not (model_path / "model.json").is_file():
        raise OutputError(f"{model_path}: the finished run's model is missing")
    return result_from_state(state, run_dir, model_path, already_finished=True)


def train(
    config: TrainConfig,
    hr_sources: Sequence[Any],
    run_dir: str | Path,
    *,
    lr_sources: Sequence[Any] | None = None,
    resume: bool = False,
) -> TrainResult:
    """Run :func:`iter_train` to the end.

    Parameters
    ----------
    config : TrainConfig
        The run's settings.
    hr_sources : sequence of Image, path or array
        High-resolution training images.
    run_dir : str or Path
        Run folder.
    lr_sources : sequence or None
        Aligned low-resolution images (paired training).
    resume : bool
        Continue the run in ``run_dir``.

    Returns
    -------
    TrainResult
        The result.
    """
    result = run_to_end(
        iter_train(config, hr_sources, run_dir, lr_sources=lr_sources, resume=resume)
    )
    assert result is not None
    return result
