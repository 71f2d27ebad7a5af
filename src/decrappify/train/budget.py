"""What a time budget decides inside a run: each phase's step count, and which phases still fit.

With ``time_budget``, every phase gets its share of the time left (:class:`~.clock.Clock`)
and keeps a :class:`PhaseCount`: the phase measures its first steps
(:data:`CALIBRATION_STEPS`), fixes its step count from the measured step time, then fits
it again after every step to the speed of the latest steps and the time left, so that it
ends within its share plus at most one step (and its closing validation) however the
machine's load changes. Counts are recorded in the run state (``counts``) and their
changes in its history, so a resumed run follows the same schedule.

Phases the budget cannot pay for are not started: the critic and GAN phases when critic
pretraining's share would buy fewer steps than it needs (:func:`drop_unaffordable_gan`,
decided once generator pretraining has measured its speed, which then gets their time),
and a further GAN cycle when what is left cannot pay for its shortest form
(:func:`gan_cycle_fits`).
"""

from __future__ import annotations

from collections.abc import Callable

from decrappify.config.train import TrainConfig
from decrappify.durations import format_duration
from decrappify.train.clock import Clock
from decrappify.train.distributed import Ranks
from decrappify.train.report import Reporter
from decrappify.train.schedule import steps_for_budget
from decrappify.train.state import RunState

__all__ = [
    "CALIBRATION_STEPS",
    "REFIT_TOLERANCE",
    "PhaseCount",
    "count_key",
    "drop_unaffordable_gan",
    "gan_cycle_fits",
    "phases_left",
]

#: With a time budget, the step time is measured over the first steps of a phase
#: (the first one, which allocates memory, is not counted) and the phase's step count
#: is fixed after this many steps.
CALIBRATION_STEPS = {"pretrain_generator": 6, "pretrain_critic": 4, "gan": 3}
#: A fixed step count changes when the count that fits differs from it by more than this
#: fraction (the one-cycle learning rate follows the count and should not jitter), or
#: when not even one more step fits.
REFIT_TOLERANCE = 0.05


def count_key(phase: str, cycle: int) -> str:
    """Return the key of a phase's step count in ``RunState.counts`` (``"gan/0"``)."""
    return phase if phase == "pretrain_generator" else f"{phase}/{cycle}"


def phases_left(state: RunState, config: TrainConfig) -> list[str]:
    """List the phases still to run, the current one first (for the budget split)."""
    if state.phase == "done":
        return []
    gan = config.gan_enabled and not state.skip_gan
    cycle = ["save_outputs", "pretrain_critic", "gan"] if gan else []
    if state.phase == "pretrain_generator":
        return ["pretrain_generator", *cycle * config.cycles]
    return cycle[cycle.index(state.phase) :] + cycle * (config.cycles - state.cycle - 1)


class PhaseCount:
    """The step count of one phase: fixed, or under a budget measured and then followed.

    Without a budget the count is ``fixed`` (recorded at once). With one, it is None
    while the first steps are timed; after ``calibration`` steps (or sooner, when one more
    step would overrun the share) it is fitted to the time left, and after every later
    step fitted again (:meth:`after_step`).

    Parameters
    ----------
    clock : Clock
        The run's clock (the phase's share, the time left).
    state : RunState
        The run state (step, counts, the measured validation overhead).
    report : Reporter
        Where count changes are noted.
    phase : str
        The phase's name.
    fixed : int
        The count without a budget (and the cap with one when ``capped``).
    calibration : int
        Steps timed before the count is first fixed.
    every : int or None
        Steps between validations + checkpoints (the phase then ends with one, whose
        time is kept), None for a phase without validations.
    capped : bool
        Whether ``fixed`` also bounds the count under a budget (``max_steps``).
    on_first_fit : callable or None
        Called with the measured step time just before the count is first fixed.
    ranks : Ranks or None
        The processes of the run: process 0 measures and decides, the others take its
        count (and whether the GAN phases were dropped).
    """

    def __init__(
        self,
        clock: Clock,
        state: RunState,
        report: Reporter,
        phase: str,
        *,
        fixed: int,
        calibration: int,
        every: int | None = None,
        capped: bool = False,
        on_first_fit: Callable[[float], None] | None = None,
        ranks: Ranks | None = None,
    ) -> None:
        self.clock, self.state, self.report, self.phase = clock, state, report, phase
        self.ranks = ranks if ranks is not None else Ranks()
        self.key = count_key(phase, state.cycle)
        self.calibration = min(calibration, fixed) if capped else calibration
        self.every = every
        self.cap = fixed if capped else None
        self.on_first_fit = on_first_fit
        self.timer = clock.timer()
        self.total: int | None = state.counts.get(self.key)
        if self.total is None and not clock.limited:
            self.total = state.counts[self.key] = fixed

    @property
    def bound(self) -> int | None:
        """The most steps the phase may run (its count, or its cap while measuring)."""
        return self.total if self.total is not None else self.cap

    def after_step(self) -> int | None:
        """Time the step just done and fit the count to the time left; the count."""
        self.timer.tick()
        if not self.clock.limited:
            return self.total
        st = self.state
        if self.ranks.is_main:
            self._follow()
        if self.ranks.distributed:
            self.total, st.skip_gan = self.ranks.decide((self.total, st.skip_gan))
            if self.total is not None:
                st.counts[self.key] = self.total
        return self.total

    def _follow(self) -> None:
        """Fix the count after the measured steps, then fit it again after each step."""
        step_s = self.timer.seconds_per_step()
        fits = self._fits(step_s)
        st = self.state
        if self.total is None:
            if st.step < self.calibration and fits > st.step:
                return  # still measuring
            if self.on_first_fit is not None:
                self.on_first_fit(step_s)
                fits = self._fits(step_s)  # the phase's share may have grown
            self._set(fits, step_s, was=None)
        elif st.step < self.total and (
            fits <= st.step or abs(fits - self.total) > REFIT_TOLERANCE * self.total
        ):
            self._set(fits, step_s, was=self.total)

    def restart_timer(self) -> None:
        """Leave what happened since the last step (a validation) out of the step time."""
        self.timer.restart()

    def _fits(self, step_s: float) -> int:
        """Count the steps that fit in the time left at ``step_s`` seconds per step."""
        st = self.state
        closing = st.overhead if self.every else 0.0  # the closing validation + checkpoint
        if self.clock.ends_run():  # then the self-check, the final save and the curves:
            closing += st.overhead  # about one validation's time, inside the budget
        extra = steps_for_budget(
            self.clock.phase_time_left() - closing,
            step_s,
            every=self.every,
            overhead_seconds=st.overhead,
            minimum=0,
        )
        total = st.step + extra
        return total if self.cap is None else min(total, self.cap)

    def _set(self, total: int, step_s: float, *, was: int | None) -> None:
        """Record the count and note the change."""
        st, clock = self.state, self.clock
        self.total = st.counts[self.key] = total
        label = self.report.label(self.phase)
        if was is None:
            budget = f"{format_duration(clock.phase_seconds or 0.0)} for {label} at"
        else:
            left = format_duration(max(clock.phase_time_left(), 0.0))
            budget = f"{left} left for {label} at {st.step} steps,"
        self.report.note(
            f"time budget: {budget} {step_s:.3f} s/step -> {total} steps"
            + ("" if was is None else f" (was {was})"),
            detail=was is not None,
            step_seconds=round(step_s, 4),
        )


def drop_unaffordable_gan(
    config: TrainConfig, state: RunState, clock: Clock, report: Reporter, step_seconds: float
) -> None:
    """Skip the critic and GAN phases when critic pretraining's share buys too few steps.

    Critic pretraining needs ``pretrain_critic.min_steps`` steps (at most ``max_steps``)
    to reach its loss threshold; a critic step is taken to cost about a generator
    pretraining step (``step_seconds``). When its share of the time left buys fewer,
    the critic and GAN phases are skipped (``state.skip_gan``, noted) and generator
    pretraining gets their time.
    """
    if not config.gan_enabled or state.skip_gan or not clock.limited:
        return
    todo = phases_left(state, config)
    shares = clock.fractions
    critic_seconds = clock.left() * shares["pretrain_critic"] / sum(shares[p] for p in todo)
    affordable = int(critic_seconds // max(step_seconds, 1e-6))
    critic = config.pretrain_critic
    needed = min(critic.min_steps, critic.max_steps)
    if affordable >= needed:
        return
    state.skip_gan = True
    clock.resplit(phases_left(state, config))
    report.note(
        f"time budget: critic pretraining would get {format_duration(critic_seconds)}, about "
        f"{affordable} steps at {step_seconds:.3f} s/step, fewer than the {needed} it needs "
        "to reach its loss threshold (pretrain_critic.min_steps): the critic and GAN phases "
        "are skipped and generator pretraining gets the whole budget",
        skipped="gan",
    )


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
