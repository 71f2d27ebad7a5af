"""Fixtures of the napari plugin tests (run under Xvfb, started by pytest-xvfb)."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable

import numpy as np
import pytest

if any(importlib.util.find_spec(m) is None for m in ("napari", "qtpy", "pytestqt")):
    collect_ignore_glob = ["test_*.py"]  # napari extra not installed: nothing to test


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture
def notes(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Messages of the error and warning notifications decrappify shows."""
    import napari.utils.notifications as notifications

    from decrappify._napari import _runner

    seen: dict[str, list[str]] = {"error": [], "warning": []}
    monkeypatch.setattr(_runner, "show_error", seen["error"].append)
    monkeypatch.setattr(_runner, "show_warning", seen["warning"].append)
    monkeypatch.setattr(notifications, "show_warning", seen["warning"].append)
    return seen


@pytest.fixture
def viewer(make_napari_viewer_proxy: Callable[..., object]) -> object:
    """A viewer seen through napari's public-only proxy, as plugin widgets see it."""
    return make_napari_viewer_proxy()


@pytest.fixture
def wait_idle(qtbot: object) -> Callable[..., None]:
    """Wait until a TaskPanel's operation has ended (its results handed over)."""

    def wait(panel: object, timeout: int = 20000) -> None:
        qtbot.waitUntil(lambda: not panel.is_running, timeout=timeout)  # type: ignore[attr-defined]

    return wait
