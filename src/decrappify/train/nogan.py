"""The NoGAN schedule as a generator of progress events, with checkpoints and exact resume.

:func:`iter_train` runs the phases of fast.ai's decrappify / DeOldify / PSSR recipe
(functions of the parts of a session, :mod:`.parts`: each phase takes the ones it uses;
:mod:`._phases` and :mod:`._gan`):

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
one (:class:`~decrappify.train.rng.RunRandom`) and saved in every checkpoint with
the weights, the optimiser states and the step counts, so ``resume=True`` ends with the
same weights as an uninterrupted run on the CPU.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator, Sequence
from pathlib import Path
from typing import Any

from decrappify.config.train import TrainConfig
from decrappify.devices import available_cores, torch_threads
from decrappify.durations import format_duration
from decrappify.errors import InputError, OutputError
from decrappify.events import Progress, run_to_end
from decrappify.io.atomic import partial_path, remove_path
from decrappify.metrics.baselines import baseline_label
from decrappify.train._gan import gan
from decrappify.train._phases import pretrain_critic, pretrain_generator, save_outputs
from decrappify.train.budget import gan_cycle_fits, phases_left
from decrappify.train.distributed import Ranks, process_group, threads_per_process
from decrappify.train.folder import (
    CHECKPOINTS_NAME,
    CONFIG_NAME,
    MODEL_NAME,
    OUTPUTS_NAME,
    config_differences,
)
from decrappify.train.parts import Parts, open_parts
from decrappify.train.result import TrainResult, result_from_state
from decrappify.train.selfcheck import check_run
from decrappify.train.state import STATE_NAME, RunState, remove_stale_files
from decrappify.train.streams import KeyBatches

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
    device = config.device if isinstance(config, TrainConfig) else "cpu"
    with process_group(device) as ranks:
        if resume:
            finished = _resume_finished(config, Path(run_dir), ranks)
            if finished is not None:
                message = f"{run_dir}: this run is already finished; nothing to do"
                log.info(message)
                yield Progress(phase="done", step=0, total=0, message=message)
                return finished
        if not isinstance(config, TrainConfig):
            raise InputError(f"config: expected a TrainConfig, got {type(config).__name__}")
        threads = config.num_threads or threads_per_process(available_cores())
        with torch_threads(threads):
            parts = open_parts(config, hr_sources, run_dir, lr_sources, resume, ranks)
            try:
                if parts.resumed:
                    st = parts.state
                    parts.report.note(
                        f"resumed at {st.phase} step {st.step} (cycle {st.cycle + 1})"
                    )
                yield from _run_phases(parts)
                return _finish(parts)
            finally:
                parts.report.close()
                if ranks.is_main:
                    remove_path(partial_path(parts.run_dir / OUTPUTS_NAME))


def _resume_finished(config: Any, run_dir: Path, ranks: Ranks) -> TrainResult | None:
    """Clean what an interrupted write left (process 0); the result if the run is finished."""
    if ranks.is_main:
        cleaned = remove_stale_files(run_dir, run_dir / CHECKPOINTS_NAME)
        if cleaned:
            log.info(f"{run_dir}: removed what an interrupted write left: {', '.join(cleaned)}")
    ranks.barrier()  # the others read the checkpoint once it is clean
    return _finished_result(config, run_dir)


#: Draw ``curves.png`` after generator pretraining when it took longer than this (seconds).
CURVES_AFTER_SECONDS = 60.0


def _pretrain_generator(p: Parts) -> Generator[Progress, None, None]:
    return pretrain_generator(
        p.config, p.state, p.nets, p.data, p.clock, p.report, p.store, p.model
    )


def _save_outputs(p: Parts) -> Generator[Progress, None, None]:
    target = p.run_dir / OUTPUTS_NAME
    return save_outputs(p.config, p.state, p.nets, p.data, p.clock, p.report, p.store, target)


def _pretrain_critic(p: Parts) -> Generator[Progress, None, None]:
    outputs = p.run_dir / OUTPUTS_NAME
    return pretrain_critic(p.config, p.state, p.nets, p.clock, p.report, p.store, outputs)


def _gan(p: Parts) -> Generator[Progress, None, None]:
    return gan(p.config, p.state, p.nets, p.data, p.clock, p.report, p.store)


#: The phases, by the name the run state records, each given the parts it uses.
PHASES: dict[str, Callable[[Parts], Generator[Progress, None, None]]] = {
    "pretrain_generator": _pretrain_generator,
    "save_outputs": _save_outputs,
    "pretrain_critic": _pretrain_critic,
    "gan": _gan,
}


def _run_phases(p: Parts) -> Generator[Progress, None, None]:
    """Run the phases from where the run's state is until it is done."""
    st, clock = p.state, p.clock
    while st.phase != "done":
        clock.start_phase(phases_left(st, p.config))
        phase = st.phase
        short = (
            clock.limited and phase == "save_outputs" and not gan_cycle_fits(clock, st, p.config)
        )
        if p.nets.ranks.decide(short):
            assert clock.budget is not None
            p.report.note(
                f"time budget: {format_duration(max(clock.left(), 0))} of "
                f"{format_duration(clock.budget)} left, too little for a GAN cycle; "
                "the remaining GAN cycles are skipped"
            )
            st.phase, st.step = "done", 0
            break
        yield from PHASES[phase](p)
        p.store.release()
        long_phase = clock.phase_elapsed() > CURVES_AFTER_SECONDS
        if phase == "pretrain_generator" and st.phase != "done" and long_phase:
            p.report.write_curves()  # intermediate curves; the final ones are drawn by _finish()


def _finish(p: Parts) -> TrainResult:
    """Save the best generator, the curves and the final checkpoint of a finished run."""
    st = p.state
    if p.nets.best is None:
        p.nets.keep_best()
    ran_gan = any(key.startswith("gan") for key in st.counts)
    if ran_gan and st.best.get("phase") == "pretrain_generator":
        p.report.note("final model: the pretrained generator (no GAN checkpoint beat it)")
    check_run(p)  # the best generator against classical methods, in its metadata
    st.finished = True
    model_path = p.model.save(st, final=True)
    p.report.write_curves()
    p.store.save_final(st)
    return result_from_state(
        st, p.run_dir, model_path, already_finished=False, baseline_name=p.report.baseline_name
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
