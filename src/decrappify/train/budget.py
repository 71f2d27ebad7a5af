"""What a time budget decides inside a run: each phase's step count, and which phases still fit.

With ``time_budget``, every phase gets its share of the time left (:class:`~.clock.Clock`),
measures its first steps (:data:`CALIBRATION_STEPS`), then fixes its step count from the
measured step time (:func:`fix_count`); generator pretraining fits it again at each
checkpoint. The count is recorded in the run state (``counts``) and the decision in its
history, so a resumed run follows the same schedule.
"""

from __future__ import annotations

from decrappify.config.train import TrainConfig
from decrappify.durations import format_duration
from decrappify.train.clock import Clock, StepTimer
from decrappify.train.report import Reporter
from decrappify.train.schedule import steps_for_budget
from decrappify.train.state import RunState

__all__ = [
    "CALIBRATION_STEPS",
    "REFIT_TOLERANCE",
    "count_key",
    "fix_count",
    "gan_cycle_fits",
    "out_of_time",
    "phases_left",
]

#: With a time budget, the step time is measured over the first steps of a phase
#: (the first one, which allocates memory, is not counted) and the phase's step count
#: is fixed after this many steps.
CALIBRATION_STEPS = {"pretrain_generator": 6, "pretrain_critic": 4, "gan": 3}
#: A phase's step count is fitted again when the new count differs from it by more
#: than this fraction (:func:`fix_count`).
REFIT_TOLERANCE = 0.05


def count_key(phase: str, cycle: int) -> str:
    """Return the key of a phase's step count in ``RunState.counts`` (``"gan/0"``)."""
    return phase if phase == "pretrain_generator" else f"{phase}/{cycle}"


def phases_left(state: RunState, config: TrainConfig) -> list[str]:
    """Phases still to run, the current one first (for the budget split)."""
    if state.phase == "done":
        return []
    cycle = ["save_outputs", "pretrain_critic", "gan"] if config.gan_enabled else []
    if state.phase == "pretrain_generator":
        return ["pretrain_generator", *cycle * config.cycles]
    return cycle[cycle.index(state.phase) :] + cycle * (config.cycles - state.cycle - 1)


def out_of_time(clock: Clock, state: RunState, timer: StepTimer, *, closing: bool) -> bool:
    """Whether one more step (and the phase's closing validation) would overrun its share."""
    reserve = timer.seconds_per_step(state.step)
    if closing:
        reserve += state.overhead
    return clock.phase_time_left() <= reserve


def fix_count(
    clock: Clock,
    state: RunState,
    report: Reporter,
    phase: str,
    timer: StepTimer,
    *,
    every: int | None = None,
    cap: int | None = None,
    was: int | None = None,
) -> int:
    """Fix the phase's step count from the measured step time (recorded, and noted).

    With ``was`` (the count fixed before; ``timer`` then covers the steps since the
    last checkpoint) the count is fitted again to the speed of the latest steps: the
    first steps' speed need not hold for the whole phase on a machine that gets
    busier or quieter. A change within :data:`REFIT_TOLERANCE` keeps ``was``: the
    one-cycle learning rate follows the count and should not jitter.
    """
    step_s = timer.seconds_per_step(state.step)
    # a phase with validations ends with one more (and a checkpoint): keep time for it
    closing = state.overhead if every else 0.0
    extra = steps_for_budget(
        clock.phase_time_left() - closing,
        step_s,
        every=every,
        overhead_seconds=state.overhead,
        minimum=0 if was is None else 1,
    )
    total = state.step + extra
    if cap is not None:
        total = min(total, cap)
    if was is not None and abs(total - was) <= REFIT_TOLERANCE * was:
        return was
    state.counts[count_key(phase, state.cycle)] = total
    label = report.label(phase)
    if was is None:
        budget = f"{format_duration(clock.phase_seconds or 0.0)} for {label} at"
    else:
        left = format_duration(max(clock.phase_time_left(), 0.0))
        budget = f"{left} left for {label} at {state.step} steps,"
    report.note(
        f"time budget: {budget} {step_s:.3f} s/step -> {total} steps"
        + ("" if was is None else f" (was {was})"),
        step_seconds=round(step_s, 4),
    )
    return total


def gan_cycle_fits(clock: Clock, state: RunState, config: TrainConfig) -> bool:
    """Whether what is left of the budget can pay for the shortest GAN cycle.

    That is one batch of outputs, one critic step, one GAN step (up to
    ``max_critic_steps`` critic steps and a generator step) and a validation with its
    checkpoint, each step costing about a generator pretraining step.
    """
    step = next(
        (
            float(entry["step_seconds"])
            for entry in reversed(state.history)
            if entry.get("phase") == "pretrain_generator" and "step_seconds" in entry
        ),
        0.0,
    )
    shortest = (config.gan.max_critic_steps + 3) * step + state.overhead
    return clock.left() > shortest
