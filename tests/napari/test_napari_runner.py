"""TaskPanel / EventWorker: progress, results in the main thread, Cancel closes, errors notify."""

from __future__ import annotations

import threading

import pytest
from qtpy.QtCore import QThread
from qtpy.QtWidgets import QApplication

from decrappify._napari._runner import (
    BAR_STEPS,
    TaskPanel,
    error_message,
    report_errors,
)
from decrappify.errors import InputError
from decrappify.events import Progress

pytestmark = pytest.mark.napari


@pytest.fixture
def panel(qtbot):
    widget = TaskPanel("Test")
    qtbot.addWidget(widget)
    return widget


def test_runs_generator_and_returns_in_main_thread(panel, wait_idle):
    created_in = []
    seen, results, threads = [], [], []

    def make():
        created_in.append(QThread.currentThread())

        def gen():
            for i in range(5):
                yield Progress(phase="work", step=i + 1, total=5, message=f"item {i + 1}")
            return 42

        return gen()

    panel.start(
        make,
        on_event=lambda e: seen.append(e.step),
        on_result=lambda value: (results.append(value), threads.append(QThread.currentThread())),
    )
    assert panel.is_running and not panel.cancel_button.isHidden()
    wait_idle(panel)
    main = QApplication.instance().thread()
    assert results == [42] and panel.last_result == 42 and panel.state == "done"
    assert seen == [1, 2, 3, 4, 5]
    assert threads == [main] and created_in and created_in[0] is not main
    assert panel.bar.value() == BAR_STEPS and panel.status.text() == "Test: done"
    assert not panel.cancel_button.isEnabled()


def test_cancel_closes_generator_before_finished(panel, qtbot, wait_idle):
    gate = threading.Event()
    log = []

    def gen():
        try:
            yield Progress(phase="work", step=1, total=3)
            gate.wait(5)
            yield Progress(phase="work", step=2, total=3)
            log.append("not cancelled")
            return "result"
        finally:
            log.append("cleanup")

    def on_event(event):
        if event.step == 1:
            panel.cancel()
            assert panel.state == "cancelling"
            gate.set()

    outcomes = []
    panel.start(
        gen,
        on_event=on_event,
        on_result=lambda v: outcomes.append(("result", v)),
        on_cancelled=lambda: outcomes.append(("cancelled", list(log))),
    )
    wait_idle(panel)
    assert outcomes == [("cancelled", ["cleanup"])]
    assert log == ["cleanup"] and panel.state == "cancelled"
    assert panel.status.text() == "Test: cancelled" and panel.bar.value() == 0


def test_start_refused_while_running(panel, wait_idle):
    gate = threading.Event()

    def gen():
        gate.wait(5)
        yield Progress(phase="x", step=1)
        return None

    panel.start(gen)
    with pytest.raises(RuntimeError, match="Test: an operation is already running"):
        panel.start(gen)
    gate.set()
    wait_idle(panel)


def test_errors_become_notifications(panel, notes, wait_idle):
    def bad_input():
        yield Progress(phase="x", step=1)
        raise InputError("cells.tif: expected a 2D or 3D image, got shape (1, 2, 3, 4)")

    errors = []
    panel.start(bad_input, on_error=errors.append)
    wait_idle(panel)
    expected = "cells.tif: expected a 2D or 3D image, got shape (1, 2, 3, 4)"
    assert notes["error"] == [expected] and errors == [expected]
    assert panel.state == "failed" and panel.status.text() == f"Failed: {expected}"

    def crash():
        raise ZeroDivisionError("division by zero")
        yield  # pragma: no cover

    panel.start(crash, title="Train")
    wait_idle(panel)
    assert notes["error"][-1] == "Train failed: ZeroDivisionError: division by zero"


def test_callback_errors_are_caught(panel, notes, wait_idle):
    def gen():
        yield Progress(phase="x", step=1)
        return 1

    def broken(_):
        raise InputError("layer: gone")

    panel.start(gen, on_result=broken)
    wait_idle(panel)
    assert notes["error"] == ["layer: gone"]


def test_progress_text_and_indeterminate_bar(panel, qtbot, wait_idle):
    gate = threading.Event()

    def gen():
        yield Progress(phase="intensity", step=0, total=None, message="percentiles")
        gate.wait(5)
        return None

    panel.start(gen)
    qtbot.waitUntil(lambda: panel.status.text() == "intensity: percentiles", timeout=5000)
    assert panel.bar.maximum() == 0  # busy indicator for an unknown total
    gate.set()
    wait_idle(panel)


def test_report_errors_and_messages(notes):
    @report_errors("Save")
    def save(fail):
        if fail:
            raise InputError("out.yaml: folder not writable")
        return "ok"

    assert save(False) == "ok"
    assert save(True) is None
    assert notes["error"] == ["out.yaml: folder not writable"]
    assert error_message(MemoryError(), "Crappify") == (
        "Crappify: out of memory; choose an output folder to write the result to OME-Zarr"
    )
    assert error_message(ValueError("a\n b"), "X") == "X failed: ValueError: a b"


def test_generator_raising_cancelled_counts_as_cancelled(panel, notes, wait_idle):
    from decrappify.errors import Cancelled

    def gen():
        yield Progress(phase="train", step=1)
        raise Cancelled("stopped by the user")

    cancelled = []
    panel.start(gen, on_cancelled=lambda: cancelled.append(True))
    wait_idle(panel)
    assert panel.state == "cancelled" and cancelled == [True] and notes["error"] == []
