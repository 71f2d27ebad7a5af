"""Tests for decrappify.train.clock and budget: the budget's phase shares, simulated clocks."""

from __future__ import annotations

import pytest

from decrappify.config.train import TrainConfig
from decrappify.train.budget import PhaseCount, drop_unaffordable_gan, phases_left
from decrappify.train.clock import WINDOW, Clock, StepTimer, phase_budgets
from decrappify.train.report import Reporter
from decrappify.train.state import RunState


def test_phase_budgets():
    cfg = TrainConfig.validate_dict(
        {
            "pretrain_generator": {"budget_share": 0.7},
            "save_outputs": {"budget_share": 0.02},
            "pretrain_critic": {"budget_share": 0.1},
            "gan": {"budget_share": 0.18},
        }
    )
    shares = phase_budgets(cfg)
    assert shares == pytest.approx(
        {"pretrain_generator": 0.7, "save_outputs": 0.02, "pretrain_critic": 0.1, "gan": 0.18}
    )
    two = phase_budgets(cfg.with_overrides({"cycles": 2}))
    assert two["pretrain_generator"] == pytest.approx(0.7)
    assert two["gan"] == pytest.approx(0.09)
    # shares of one run add up to 1 over every phase and cycle
    assert two["pretrain_generator"] + 2 * (
        two["save_outputs"] + two["pretrain_critic"] + two["gan"]
    ) == pytest.approx(1.0)
    assert phase_budgets(cfg.with_overrides({"gan.max_steps": 0})) == {"pretrain_generator": 1.0}


class FakeTime:
    """A clock that moves only when told to."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_step_timer_leaves_out_the_first_step_and_what_is_not_a_step():
    now = FakeTime()
    timer = StepTimer(now)
    now.t += 5.0  # the first step allocates memory
    timer.tick()
    assert timer.seconds_per_step() == 5.0  # all there is so far
    for _ in range(3):
        now.t += 1.0
        timer.tick()
    now.t += 30.0  # a validation
    timer.restart()
    now.t += 1.0
    timer.tick()
    assert timer.seconds_per_step() == 1.0


def test_step_timer_follows_the_latest_steps():
    now = FakeTime()
    timer = StepTimer(now)
    timer.tick()
    for _ in range(200):
        now.t += 0.2
        timer.tick()
    assert timer.seconds_per_step() == pytest.approx(0.2)
    for _ in range(WINDOW):
        now.t += 2.0
        timer.tick()
    # the last tenth of the steps: 21 steps, 10 of them slow
    assert timer.seconds_per_step() == pytest.approx((11 * 0.2 + 10 * 2.0) / 21)


def _report(state: RunState, clock: Clock) -> Reporter:
    class Notes(Reporter):
        def __init__(self) -> None:  # no log file
            self.state, self.clock, self.cycles = state, clock, 1
            self.notes: list[str] = []

        def note(self, text, **extra):
            self.notes.append(text)

    return Notes()


def simulate(step_seconds, *, budget, every, validation, calibration=6):
    """Run a phase's step loop on a simulated clock; when it ended and the count notes.

    ``step_seconds(i)`` is the time of step i (1-based); a validation + checkpoint every
    ``every`` steps and at the end costs ``validation`` seconds.
    """
    now = FakeTime()
    clock = Clock(budget, {"pretrain_generator": 1.0}, now=now)
    state = RunState(overhead=validation)
    report = _report(state, clock)
    clock.start_phase(["pretrain_generator"])
    count = PhaseCount(
        clock, state, report, "pretrain_generator",
        fixed=10**9, calibration=calibration, every=every,
    )  # fmt: skip
    while count.total is None or state.step < count.total:
        now.t += step_seconds(state.step + 1)
        state.step += 1
        total = count.after_step()
        if state.step == total or state.step % every == 0:
            now.t += validation
            count.restart_timer()
    return now.t, state.step, report.notes


@pytest.mark.parametrize(
    ("before", "after", "change"),
    [(0.23, 2.05, 100), (0.23, 2.05, 500), (2.05, 0.23, 40), (0.5, 0.5, 0), (0.23, 9.0, 300)],
)
def test_a_phase_ends_within_its_budget_whatever_the_load_does(before, after, change):
    """The step time rises 9x (the EM run of issue 16: 0.23 -> 2.05 s/step) or falls:
    the phase ends within its budget + one step + one validation, and uses it."""
    budget, validation = 180.0, 3.0
    end, steps, notes = simulate(
        lambda i: before if i <= change else after,
        budget=budget,
        every=100,
        validation=validation,
    )
    longest = max(before, after)
    assert end <= budget + longest + validation
    assert end >= budget - longest - 2 * validation  # and the budget is used
    assert notes[0].startswith("time budget: 3m for pretrain_generator at ")
    if before != after:
        assert len(notes) > 1  # the count followed the machine


def test_the_first_count_is_logged_and_its_refits_only_at_debug(tmp_path, caplog):
    """The console gets one line for the budget; each refit (every few seconds under a
    changing load) stays in the run's history and the DEBUG log."""
    now = FakeTime()
    clock = Clock(60.0, {"pretrain_generator": 1.0}, now=now)
    state = RunState()
    report = Reporter(
        tmp_path, state, clock, cycles=1, baseline_name="bicubic", validation=False, keep_rows=None
    )
    clock.start_phase(["pretrain_generator"])
    count = PhaseCount(
        clock, state, report, "pretrain_generator", fixed=10**9, calibration=3, every=1000
    )
    with caplog.at_level("DEBUG", logger="decrappify"):
        while count.total is None or state.step < count.total:
            now.t += 0.2 if state.step < 20 else 1.0  # the machine gets busy
            state.step += 1
            count.after_step()
    notes = [h["note"] for h in state.history if "note" in h]
    levels = [r.levelname for r in caplog.records if r.getMessage().startswith("time budget")]
    assert len(notes) > 1 and len(levels) == len(notes)
    assert levels == ["INFO"] + ["DEBUG"] * (len(notes) - 1)
    report.close()


def test_a_count_within_tolerance_does_not_move():
    """Noise of a few percent around a steady speed leaves the count (and learning rate) alone."""
    end, steps, notes = simulate(
        lambda i: 0.5 * (1.03 if i % 2 else 0.97), budget=100.0, every=1000, validation=0.0
    )
    assert end <= 100.0 + 0.6
    # at most a last cut when not one more step fits (the speed was estimated 0.6 % fast)
    assert len(notes) == 1 or (len(notes) == 2 and notes[1].startswith("time budget: 0s left"))


def test_the_gan_phases_are_dropped_when_the_critic_share_buys_too_few_steps():
    cfg = TrainConfig(time_budget=600)
    now = FakeTime()
    clock = Clock(600, phase_budgets(cfg), now=now)
    state = RunState()
    report = _report(state, clock)
    clock.start_phase(phases_left(state, cfg))
    assert clock.phase_seconds == pytest.approx(0.76 * 600)
    drop_unaffordable_gan(cfg, state, clock, report, 0.25)  # 36 s: 144 critic steps
    assert not state.skip_gan and not report.notes
    now.t = 10.0
    drop_unaffordable_gan(cfg, state, clock, report, 0.5)  # 35.4 s: 70 critic steps
    assert state.skip_gan and phases_left(state, cfg) == ["pretrain_generator"]
    assert clock.phase_seconds == pytest.approx(600.0)  # pretraining gets the whole budget
    assert report.notes == [
        "time budget: critic pretraining would get 35s, about 70 steps at 0.500 s/step, fewer "
        "than the 100 it needs to reach its loss threshold (pretrain_critic.min_steps): the "
        "critic and GAN phases are skipped and generator pretraining gets the whole budget"
    ]
