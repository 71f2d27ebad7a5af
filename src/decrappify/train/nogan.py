"""The NoGAN schedule as a generator of progress events, with checkpoints and exact resume.

:func:`iter_train` runs the phases of fast.ai's decrappify / DeOldify / PSSR recipe
(functions of a :class:`~decrappify.train._session.Session`: the run's folder, models,
data, state and clock; :mod:`._phases` and :mod:`._gan`):

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
import time
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import Any

from decrappify.config.train import TrainConfig, format_duration
from decrappify.devices import available_cores, torch_threads
from decrappify.errors import InputError, OutputError
from decrappify.events import Progress, run_to_end
from decrappify.io.atomic import partial_path, remove_path
from decrappify.metrics.baselines import baseline_label
from decrappify.train._gan import gan
from decrappify.train._phases import pretrain_critic, pretrain_generator, save_outputs
from decrappify.train._session import CURVES_AFTER_SECONDS, Session, clone_state
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
from decrappify.train.selfcheck import check_run
from decrappify.train.state import STATE_NAME, RunState, remove_stale_files, write_checkpoint

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
    with torch_threads(config.num_threads or available_cores()):
        run = Session(config, hr_sources, run_dir, lr_sources, resume)
        try:
            if run.resumed:
                run.note(
                    f"resumed at {run.state.phase} step {run.state.step} (cycle "
                    f"{run.state.cycle + 1})"
                )
            yield from _run_phases(run)
            return _finish(run)
        finally:
            run.log.close()
            remove_path(partial_path(run.run_dir / OUTPUTS_NAME))


#: The phases, by the name the run state records.
PHASES = {
    "pretrain_generator": pretrain_generator,
    "save_outputs": save_outputs,
    "pretrain_critic": pretrain_critic,
    "gan": gan,
}


def _run_phases(run: Session) -> Generator[Progress, None, None]:
    """Run the phases from where the run's state is until it is done."""
    while run.state.phase != "done":
        run.start_phase_clock()
        phase = run.state.phase
        if phase == "save_outputs" and run.budget is not None and not run.gan_cycle_fits():
            run.note(
                f"time budget: {format_duration(max(run.budget - run.elapsed(), 0))} of "
                f"{format_duration(run.budget)} left, too little for a GAN cycle; "
                "the remaining GAN cycles are skipped"
            )
            run.state.phase, run.state.step = "done", 0
            break
        yield from PHASES[phase](run)
        run.tensors = {}
        long_phase = time.perf_counter() - run.phase_start > CURVES_AFTER_SECONDS
        if phase == "pretrain_generator" and run.state.phase != "done" and long_phase:
            run.write_curves()  # intermediate curves; the final ones are drawn by _finish()


def _finish(run: Session) -> TrainResult:
    """Save the best generator, the curves and the final checkpoint of a finished run."""
    st = run.state
    if run.best_state is None:
        run.best_state = clone_state(run.G)
    ran_gan = any(key.startswith("gan") for key in st.counts)
    if ran_gan and st.best.get("phase") == "pretrain_generator":
        run.note("final model: the pretrained generator (no GAN checkpoint beat it)")
    check_run(run)  # the best generator against classical methods, in its metadata
    st.finished = True
    model_path = run.save_best_model(final=True)
    run.write_curves()
    # a finished run is never trained further: its last checkpoint is the state alone
    st.optimizers, st.log_rows, st.elapsed = {}, run.log.rows, run.elapsed()
    run.log.flush()
    write_checkpoint(run.checkpoints, st, run.random.tensors())
    return result_from_state(
        st, run.run_dir, model_path, already_finished=False, baseline_name=run.baseline_name
    )


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
    return result_from_state(
        state,
        run_dir,
        model_path,
        already_finished=True,
        baseline_name=baseline_label(config.generator.scale),
    )


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
