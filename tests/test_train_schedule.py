"""Tests for decrappify.train.schedule: one-cycle LR, budgets, switching and stopping rules."""

from __future__ import annotations

import math

import numpy as np
import pytest

from decrappify.errors import InputError
from decrappify.train.schedule import (
    CriticSwitch,
    EarlyStopping,
    ThresholdStop,
    one_cycle_lr,
    split_remaining,
    steps_for_budget,
    watch_score,
)


def test_one_cycle_shape():
    total, peak = 100, 1e-3
    lrs = np.array([one_cycle_lr(s, total, peak, pct_start=0.25) for s in range(total)])
    assert lrs[0] == pytest.approx(peak / 25)
    assert lrs.max() == pytest.approx(peak)
    assert int(np.argmax(lrs)) == 25
    assert lrs[-1] == pytest.approx(peak / 1e3)
    assert np.all(np.diff(lrs[:26]) > 0)
    assert np.all(np.diff(lrs[25:]) < 0)
    # cosine: halfway through the warm-up the rate is the mean of start and peak
    assert one_cycle_lr(0, 4, 1.0, pct_start=0.5, div_factor=10) == pytest.approx(0.1)
    assert one_cycle_lr(1, 4, 1.0, pct_start=0.5, div_factor=10) == pytest.approx(0.55)


def test_one_cycle_edge_cases():
    assert one_cycle_lr(0, 1, 1.0, final_div_factor=100) == pytest.approx(0.01)
    assert one_cycle_lr(0, 10, 1.0, pct_start=0.0) == pytest.approx(1.0)
    with pytest.raises(InputError, match=r"step must be in \[0, 10\) \(got 10\)"):
        one_cycle_lr(10, 10, 1.0)


def test_steps_for_budget():
    assert steps_for_budget(100.0, 1.0) == 100
    # a 10 s overhead every 10 steps costs 1 s per step
    assert steps_for_budget(100.0, 1.0, every=10, overhead_seconds=10.0) == 50
    assert steps_for_budget(-5.0, 1.0) == 1
    assert steps_for_budget(-5.0, 1.0, minimum=0) == 0
    assert steps_for_budget(1e6, 0.5, maximum=30) == 30
    with pytest.raises(InputError, match="step time must be > 0"):
        steps_for_budget(10.0, 0.0)


def test_split_remaining_shares_overruns():
    fractions = {
        "pretrain_generator": 0.7,
        "save_outputs": 0.02,
        "pretrain_critic": 0.1,
        "gan": 0.18,
    }
    todo = list(fractions)
    assert split_remaining(1000.0, fractions, todo) == pytest.approx(700.0)
    # after phase 1 overran (150 s left of the 300 s planned for the rest) every later
    # phase loses the same fraction of its share
    later = todo[1:]
    assert split_remaining(150.0, fractions, later) == pytest.approx(10.0)
    assert split_remaining(150.0, fractions, later[2:]) == pytest.approx(150.0)
    assert split_remaining(-1.0, fractions, later) == 0.0
    assert split_remaining(10.0, fractions, []) == 0.0


@pytest.mark.parametrize(
    ("losses", "threshold", "bound", "expected"),
    [
        ([0.7, 0.6, 0.5], 0.65, 5, 2),  # the second step gets below the threshold
        ([0.5], 0.65, 5, 1),
        ([0.9] * 5, 0.65, 5, 5),  # never below: the bound
        ([0.9, 0.9, 0.1], 0.65, 2, 2),
        ([0.65, 0.64], 0.65, 5, 2),  # strictly below
    ],
)
def test_critic_switch(losses, threshold, bound, expected):
    rule = CriticSwitch(threshold, bound)
    assert rule.critic_steps_for(losses) == expected


def test_critic_switch_validation():
    with pytest.raises(InputError, match=r"gan.max_critic_steps: must be >= 1 \(got 0\)"):
        CriticSwitch(0.65, 0)
    with pytest.raises(InputError, match="needs at least 3 losses"):
        CriticSwitch(0.1, 3).critic_steps_for([0.9])


def test_threshold_stop_uses_a_full_window():
    stop = ThresholdStop(0.3, 3)
    assert not stop.update(0.1)  # one value is not a full window
    assert not stop.update(0.1)
    assert stop.update(0.1)
    stop = ThresholdStop(0.3, 3)
    assert [stop.update(v) for v in (0.9, 0.2, 0.2, 0.2)] == [False, False, False, True]
    assert stop.mean == pytest.approx(0.2) and len(stop.recent) == 3
    assert math.isnan(ThresholdStop(0.3, 2).mean)


def test_early_stopping_keeps_the_best_and_stops_after_patience():
    early = EarlyStopping(patience=2, best=0.5)
    verdicts = [early.update(v) for v in (0.6, 0.7, 0.65, 0.64)]
    assert [(v.improved, v.stop) for v in verdicts] == [
        (True, False),
        (True, False),
        (False, False),
        (False, True),
    ]
    assert early.best == 0.7


def test_early_stopping_never_beating_the_start():
    early = EarlyStopping(patience=3, best=0.8)
    verdicts = [early.update(v) for v in (0.7, 0.8, float("nan"))]
    assert [v.improved for v in verdicts] == [False, False, False]
    assert verdicts[-1].stop and early.best == 0.8


def test_early_stopping_fidelity_guard_and_frc_score():
    # a sharper checkpoint (FRC 3.0 px < 3.4 px) counts only while PSNR stays above the floor
    early = EarlyStopping(patience=2, best=watch_score({"frc": 3.4}, "frc"), floor=20.0)
    sharper_worse = early.update(watch_score({"frc": 3.0}, "frc"), guard=19.9)
    sharper_ok = early.update(watch_score({"frc": 3.1}, "frc"), guard=20.05)
    assert (sharper_worse.improved, sharper_ok.improved) == (False, True)
    assert early.best == -3.1
    assert EarlyStopping.from_dict(early.to_dict()).floor == 20.0
    assert watch_score({"psnr": 21.0}, "psnr") == 21.0 and math.isnan(watch_score({}, "ssim"))


def test_early_stopping_state_round_trip():
    early = EarlyStopping(patience=4)
    assert early.to_dict() == {"patience": 4, "best": None, "since_best": 0, "floor": None}
    early.update(0.3)
    early.update(0.2)
    back = EarlyStopping.from_dict(early.to_dict())
    assert back == early
    assert back.update(0.25).improved is False and back.since_best == 2


def test_the_critic_judges_one_window_of_the_batch():
    import torch

    from decrappify.config.model import CriticConfig
    from decrappify.train._phases import critic_view

    real = torch.arange(2 * 256 * 256, dtype=torch.float32).reshape(2, 1, 256, 256)
    fake = real + 0.5
    torch.manual_seed(0)
    a, b = critic_view(CriticConfig(crop=64).crop, real, fake)
    assert a.shape == b.shape == (2, 1, 64, 64)
    assert torch.equal(b - a, torch.full_like(a, 0.5))  # the same window of both
    assert critic_view(CriticConfig(crop=None).crop, real)[0] is real
    with pytest.raises(ValueError, match="crop 32 is smaller than the critic's input minimum 64"):
        CriticConfig(crop=32)
