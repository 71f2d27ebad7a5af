"""Pure scheduling rules of the NoGAN phases (no torch): learning rate, budget, switch, stop.

Everything the training loop decides from numbers lives here, as small functions and
classes whose state is a plain dict (saved in the run state for exact resume):

- :func:`one_cycle_lr`: fastai's one-cycle learning rate as a function of the step;
- :func:`steps_for_budget`: how many steps fit in a phase's share of a time budget;
- :class:`CriticSwitch`: the adaptive switching rule of the GAN phase;
- :class:`ThresholdStop`: stop critic pretraining once its smoothed loss is low;
- :class:`EarlyStopping`: keep the best validation score, stop after ``patience``
  checkpoints without improvement.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from decrappify.errors import InputError


def one_cycle_lr(
    step: int,
    total: int,
    max_lr: float,
    *,
    pct_start: float = 0.25,
    div_factor: float = 25.0,
    final_div_factor: float = 1e3,
) -> float:
    """Learning rate of step ``step`` of a one-cycle schedule (fastai's ``fit_one_cycle``).

    The rate rises from ``max_lr / div_factor`` to ``max_lr`` over the first
    ``round(pct_start * total)`` steps and falls to ``max_lr / final_div_factor`` at the
    last step, both with cosine curves.

    Parameters
    ----------
    step : int
        Step index in ``[0, total)``.
    total : int
        Number of steps (>= 1).
    max_lr : float
        Peak learning rate.
    pct_start : float
        Fraction of the steps spent warming up, in ``[0, 1)``.
    div_factor : float
        Start at ``max_lr / div_factor``.
    final_div_factor : float
        End at ``max_lr / final_div_factor``.

    Returns
    -------
    float
        The learning rate.
    """
    if total < 1 or not 0 <= step < total:
        raise InputError(f"one_cycle_lr: step must be in [0, {total}) (got {step})")
    start, end = max_lr / div_factor, max_lr / final_div_factor
    warm = round(pct_start * total)
    if step < warm:
        return _cosine(start, max_lr, step / warm)
    rest = total - warm - 1
    return _cosine(max_lr, end, (step - warm) / rest if rest > 0 else 1.0)


def _cosine(start: float, end: float, fraction: float) -> float:
    """Cosine interpolation from ``start`` (fraction 0) to ``end`` (fraction 1)."""
    return end + (start - end) * (1.0 + math.cos(math.pi * fraction)) / 2.0


def steps_for_budget(
    budget: float,
    step_seconds: float,
    *,
    every: int | None = None,
    overhead_seconds: float = 0.0,
    minimum: int = 1,
    maximum: int | None = None,
) -> int:
    """Count the steps that fit in a time budget.

    Solves ``n * step_seconds + (n // every) * overhead_seconds <= budget`` for the
    largest ``n`` (the overhead being a validation + checkpoint every ``every`` steps),
    clipped to ``[minimum, maximum]``.

    Parameters
    ----------
    budget : float
        Seconds available (may be <= 0: the minimum is returned).
    step_seconds : float
        Measured seconds per step (> 0).
    every : int or None
        Steps between two overheads (None: no periodic overhead).
    overhead_seconds : float
        Seconds of each periodic overhead.
    minimum : int
        Fewest steps returned.
    maximum : int or None
        Most steps returned.

    Returns
    -------
    int
        The step count.
    """
    if not step_seconds > 0:
        raise InputError(f"steps_for_budget: step time must be > 0 (got {step_seconds})")
    per_step = step_seconds
    if every:
        per_step += max(overhead_seconds, 0.0) / every
    n = int(max(budget, 0.0) // per_step)
    n = max(n, minimum)
    return min(n, maximum) if maximum is not None else n


def split_remaining(remaining: float, fractions: dict[str, float], todo: Sequence[str]) -> float:
    """Seconds for the next phase: its share of what is left, among the phases still to run.

    Parameters
    ----------
    remaining : float
        Seconds left in the whole budget.
    fractions : dict of str to float
        Budget fraction of each phase (one entry per phase run; a phase run several
        times appears several times in ``todo``).
    todo : sequence of str
        The phases still to run, the next one first.

    Returns
    -------
    float
        ``remaining * share(next) / sum(share(p) for p in todo)``; an overrun of
        earlier phases is taken from all later ones in proportion.
    """
    if not todo:
        return 0.0
    total = sum(fractions[name] for name in todo)
    if total <= 0:
        return 0.0
    return max(remaining, 0.0) * fractions[todo[0]] / total


@dataclass
class CriticSwitch:
    """The adaptive switching rule of the GAN phase (fastai ``AdaptiveGANSwitcher``).

    Before each generator step the critic trains on fresh batches; after each critic
    step, training switches to the generator when the critic's loss is below
    ``threshold`` or after ``max_steps`` critic steps.

    Parameters
    ----------
    threshold : float
        Critic loss below which the generator trains next.
    max_steps : int
        Critic steps per generator step at most (>= 1).
    """

    threshold: float
    max_steps: int

    def __post_init__(self) -> None:
        if self.max_steps < 1:
            raise InputError(f"gan.max_critic_steps: must be >= 1 (got {self.max_steps})")

    def switch_to_generator(self, critic_loss: float, critic_steps: int) -> bool:
        """Whether the generator trains next.

        Parameters
        ----------
        critic_loss : float
            Loss of the critic step just done.
        critic_steps : int
            Critic steps done since the last generator step (including this one).

        Returns
        -------
        bool
            True when the loss is below the threshold or the bound is reached.
        """
        return critic_loss < self.threshold or critic_steps >= self.max_steps

    def critic_steps_for(self, losses: Sequence[float]) -> int:
        """Count the critic steps the rule takes for a sequence of critic losses.

        Parameters
        ----------
        losses : sequence of float
            The losses the successive critic steps would have.

        Returns
        -------
        int
            Steps until the switch (at most ``max_steps``).
        """
        for i, loss in enumerate(losses, start=1):
            if self.switch_to_generator(loss, i):
                return i
        raise InputError(f"critic_steps_for: needs at least {self.max_steps} losses")


@dataclass
class ThresholdStop:
    """Stop critic pretraining when the mean loss of the last ``window`` steps is low.

    Parameters
    ----------
    threshold : float
        The loss to get below.
    window : int
        Steps averaged.
    recent : list of float
        The last losses (state, for resume).
    """

    threshold: float
    window: int
    recent: list[float] = field(default_factory=list)

    def update(self, loss: float) -> bool:
        """Record a step's loss.

        Parameters
        ----------
        loss : float
            The critic's loss.

        Returns
        -------
        bool
            True when the smoothed loss is below the threshold (over a full window).
        """
        self.recent = [*self.recent, float(loss)][-self.window :]
        return len(self.recent) == self.window and self.mean < self.threshold

    @property
    def mean(self) -> float:
        """Mean of the recorded losses (nan when none)."""
        return sum(self.recent) / len(self.recent) if self.recent else math.nan


@dataclass
class Verdict:
    """What :meth:`EarlyStopping.update` decided.

    Parameters
    ----------
    improved : bool
        The value beat the best so far (it is the new best).
    stop : bool
        ``patience`` checkpoints in a row did not beat the best.
    """

    improved: bool
    stop: bool


def watch_score(metrics: dict[str, float], metric: str) -> float:
    """Score a checkpoint for the GAN phase: PSNR, SSIM, or minus the FRC resolution.

    Parameters
    ----------
    metrics : dict of str to float
        Validation metrics (``psnr``, ``ssim``, ``frc``).
    metric : str
        The watched one.

    Returns
    -------
    float
        Higher is better; NaN when the metric is missing.
    """
    value = float(metrics.get(metric, math.nan))
    return -value if metric == "frc" else value


@dataclass
class EarlyStopping:
    """Track the best validation score and count checkpoints without improvement.

    Higher is better (PSNR, SSIM). The reference is the score of the generator the
    phase started from, so a GAN phase that never beats the pretrained generator
    stops after ``patience`` checkpoints and keeps it.

    Parameters
    ----------
    patience : int
        Checkpoints without improvement before stopping (>= 1).
    best : float
        Best score so far (``-inf`` when there is none).
    since_best : int
        Checkpoints since the best (state, for resume).
    floor : float
        Lowest ``guard`` value a checkpoint may have to count as an improvement.
    """

    patience: int
    best: float = -math.inf
    since_best: int = 0
    floor: float = -math.inf

    def update(self, value: float, guard: float = math.inf) -> Verdict:
        """Record a checkpoint's validation score.

        Parameters
        ----------
        value : float
            The score (nan counts as no improvement).
        guard : float
            A second score that must stay at or above :attr:`floor` for the checkpoint
            to count (the GAN phase's fidelity guard: validation PSNR).

        Returns
        -------
        Verdict
            Whether it improved on the best and whether to stop.
        """
        if value > self.best and guard >= self.floor:
            self.best, self.since_best = float(value), 0
            return Verdict(improved=True, stop=False)
        self.since_best += 1
        return Verdict(improved=False, stop=self.since_best >= self.patience)

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict state (JSON: ``-inf`` is written as None).

        Returns
        -------
        dict
            ``patience``, ``best``, ``since_best``, ``floor``.
        """
        state = asdict(self)
        state["best"] = None if math.isinf(self.best) else self.best
        state["floor"] = None if math.isinf(self.floor) else self.floor
        return state

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> EarlyStopping:
        """Rebuild from :meth:`to_dict`.

        Parameters
        ----------
        state : dict
            The saved state.

        Returns
        -------
        EarlyStopping
            The tracker.
        """
        best, floor = state.get("best"), state.get("floor")
        return cls(
            patience=int(state["patience"]),
            best=-math.inf if best is None else float(best),
            since_best=int(state.get("since_best", 0)),
            floor=-math.inf if floor is None else float(floor),
        )
