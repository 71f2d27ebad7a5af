"""Tests for decrappify.train.clock and budget: the budget's phase shares, simulated clocks."""

from __future__ import annotations

import pytest

from decrappify.config.train import TrainConfig
from decrappify.train.clock import phase_budgets


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
