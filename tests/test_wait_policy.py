"""The OpenMP wait policy the tools set before torch starts (decrappify.devices)."""

from __future__ import annotations

import os
import subprocess
import sys

from decrappify.devices import prefer_passive_waits


def test_passive_waits_are_asked_for_before_torch_starts(monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    assert prefer_passive_waits() is True
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"


def test_the_users_policy_is_kept(monkeypatch):
    monkeypatch.setenv("OMP_WAIT_POLICY", "active")
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    assert prefer_passive_waits() is False
    assert os.environ["OMP_WAIT_POLICY"] == "active"


def test_nothing_is_set_once_torch_runs(monkeypatch):
    import torch  # noqa: F401  (started: libgomp has read its environment)

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert prefer_passive_waits() is False
    assert "OMP_WAIT_POLICY" not in os.environ


def test_the_command_line_sets_it_before_importing_torch():
    code = (
        "import os, sys\n"
        "import decrappify.cli as cli\n"
        "cli.app = lambda: print(os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)\n"
        "cli.main()\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["PASSIVE", "False"]
