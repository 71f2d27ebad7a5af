"""The clock of a training run: time spent over all sessions, the time budget and its phase shares.

Pure (no torch). A :class:`Clock` tells how long the run has trained (earlier sessions
included), how much of the budget the current phase may spend and how much of it is
left; a :class:`StepTimer` measures a phase's seconds per step. What the run decides
from these numbers (step counts, skipped phases) is in :mod:`decrappify.train.budget`.

Both read the time through ``now`` (``time.perf_counter`` by default, read from
:data:`monotonic` when they are made, so a test can put a simulated clock in its place).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from decrappify.config.train import TrainConfig
from decrappify.train.schedule import split_remaining

__all__ = ["WINDOW", "Clock", "StepTimer", "monotonic", "phase_budgets"]

#: The time source of new clocks and timers (seconds, monotonic).
monotonic: Callable[[], float] = time.perf_counter
#: Fewest latest steps whose mean is a phase's step time (:class:`StepTimer`).
WINDOW = 10


def phase_budgets(config: TrainConfig) -> dict[str, float]:
    """Split the time budget's shares over the phases (normalised to sum 1).

    Phases 2-4 get their share once per cycle, divided by the number of cycles; they
    get nothing when the GAN is disabled.

    Parameters
    ----------
    config : TrainConfig
        The configuration.

    Returns
    -------
    dict of str to float
        Fraction of the budget per phase name (one cycle's share for phases 2-4).
    """
    shares = {"pretrain_generator": config.pretrain_generator.budget_share}
    if config.gan_enabled:
        shares["save_outputs"] = config.save_outputs.budget_share
        shares["pretrain_critic"] = config.pretrain_critic.budget_share
        shares["gan"] = config.gan.budget_share
    total = sum(shares.values())
    fractions = {k: v / total for k, v in shares.items()}
    for name in ("save_outputs", "pretrain_critic", "gan"):
        if name in fractions:
            fractions[name] /= config.cycles
    return fractions


class StepTimer:
    """Seconds per step of a phase over its latest steps.

    The first step of a phase (which allocates memory) is not counted, nor is the time
    between :meth:`restart` and the next step's start (a validation, a checkpoint).
    :meth:`seconds_per_step` is the mean of the last tenth of the steps timed so far (at
    least :data:`WINDOW` of them): it follows a machine that gets busier or quieter
    within a few steps, without jumping with every slow step.

    Parameters
    ----------
    now : callable or None
        The time source (:data:`monotonic` when None).
    """

    def __init__(self, now: Callable[[], float] | None = None) -> None:
        self.now = now if now is not None else monotonic
        self.start = self._mark = self.now()
        self.first: float | None = None
        self.durations: list[float] = []

    def tick(self) -> None:
        """Mark the end of a step."""
        t = self.now()
        if self.first is None:
            self.first = t - self._mark
        else:
            self.durations.append(t - self._mark)
        self._mark = t

    def restart(self) -> None:
        """Leave the time since the last step out (call after work that is not a step)."""
        self._mark = self.now()

    def since_start(self) -> float:
        """Seconds since the timer was made."""
        return self.now() - self.start

    def seconds_per_step(self) -> float:
        """Return the mean time of the latest steps (the first step's own, before a second)."""
        if not self.durations:
            return max(self.first if self.first is not None else self.since_start(), 1e-6)
        n = len(self.durations)
        k = max(min(n, WINDOW), n // 10)
        return max(sum(self.durations[-k:]) / k, 1e-6)


class Clock:
    """Training time over all sessions of a run, and the current phase's share of a budget.

    Parameters
    ----------
    budget : float or None
        The run's time budget in seconds (None: no budget, fixed step counts).
    fractions : dict of str to float
        Budget fraction of each phase (:func:`phase_budgets`).
    elapsed_before : float
        Seconds trained in earlier sessions (from the checkpoint).
    now : callable or None
        The time source (:data:`monotonic` when None).
    """

    def __init__(
        self,
        budget: float | None,
        fractions: dict[str, float],
        *,
        elapsed_before: float = 0.0,
        now: Callable[[], float] | None = None,
    ) -> None:
        self.budget = budget
        self.fractions = dict(fractions)
        self.now = now if now is not None else monotonic
        self._session_start = self.now()
        self._elapsed_before = float(elapsed_before)
        self.phase_start = self._session_start
        self.phase_seconds: float | None = None

    @property
    def limited(self) -> bool:
        """Whether the run has a time budget."""
        return self.budget is not None

    def elapsed(self) -> float:
        """Seconds of training over all sessions (start-up left out)."""
        return self._elapsed_before + self.now() - self._session_start

    def left(self) -> float:
        """Seconds left in the whole budget (may be negative)."""
        assert self.budget is not None
        return self.budget - self.elapsed()

    def timer(self) -> StepTimer:
        """Make a step timer on this clock's time source."""
        return StepTimer(self.now)

    def start_phase(self, todo: Sequence[str]) -> None:
        """Start the clock of the next phase: its share of what is left of the budget.

        Parameters
        ----------
        todo : sequence of str
            The phases still to run, the next one first.
        """
        self.phase_start = self.now()
        if self.budget is None:
            self.phase_seconds = None
            return
        self.phase_seconds = split_remaining(self.left(), self.fractions, todo)

    def phase_elapsed(self) -> float:
        """Seconds since the current phase started."""
        return self.now() - self.phase_start

    def phase_time_left(self) -> float:
        """Seconds left of the current phase's share (may be negative)."""
        assert self.phase_seconds is not None
        return self.phase_seconds - self.phase_elapsed()

    def ends_run(self) -> bool:
        """Whether the current phase's share is all the budget left (the run's last phase)."""
        return self.phase_seconds is not None and self.phase_time_left() >= self.left() - 1e-6

    def resplit(self, todo: Sequence[str]) -> None:
        """Share what is left among ``todo`` again (the current phase first, keeping its past)."""
        assert self.budget is not None
        self.phase_seconds = self.phase_elapsed() + split_remaining(
            self.left(), self.fractions, todo
        )

    def exclude(self, seconds: float) -> None:
        """Leave ``seconds`` just spent (the first validation) out of the time budget."""
        self._session_start += seconds
        self.phase_start += seconds
