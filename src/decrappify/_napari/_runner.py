"""Run decrappify's progress-event generators from napari widgets, with a bar and Cancel.

Every long operation of the core is a generator of :class:`decrappify.events.Progress`
events that ``return``s its result (see ``docs/architecture.md``). A widget runs one in
a worker thread with a :class:`TaskPanel` (progress bar, status line, Cancel button)::

    from decrappify._napari._runner import TaskPanel

    self.panel = TaskPanel(title="Train")
    layout.addWidget(self.panel)
    self.panel.running_changed.connect(lambda busy: self.run_button.setEnabled(not busy))
    ...
    self.panel.start(
        lambda: api.iter_train(config, out),  # called in the worker thread
        on_event=self.show_losses,            # main thread: every Progress event
        on_result=self.add_model,             # main thread: the generator's return value
    )

What the machinery guarantees:

* The generator is created (the factory is called) and driven in the worker thread, so
  even its set-up work (reading files, percentiles) never freezes the viewer.
* ``on_event``, ``on_result``, ``on_error`` and ``on_cancelled`` run in the main thread
  (Qt queued signals): they may touch the viewer and its layers.
* Cancel takes effect at the next ``yield``: the worker stops iterating and **closes the
  generator in the worker thread before ``finished`` is emitted**, so its ``finally``
  blocks (which remove partial outputs) have run by the time the panel is idle. A
  Cancel that arrives after the generator returned is ignored (the result is kept).
* Errors never escape as tracebacks: :class:`decrappify.errors.DecrappifyError`
  messages (one line naming the parameter or file) are shown as napari error
  notifications as they are; other exceptions as ``"<title> failed: <type>: <message>"``
  with the traceback in the ``decrappify`` log. Warnings raised in the worker become
  warning notifications.

:func:`notify_error` and :func:`report_errors` give the same treatment to errors in
synchronous slots (bad parameters found when a button is clicked).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Generator
from typing import Any, TypeVar

from napari.utils.notifications import show_error, show_warning
from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget
from superqt.utils import GeneratorWorker

from decrappify.errors import Cancelled, DecrappifyError
from decrappify.events import Progress

logger = logging.getLogger("decrappify")

F = TypeVar("F", bound=Callable[..., Any])
EventsFactory = Callable[[], Generator[Progress, None, Any]]

#: Resolution of the progress bar (steps of 0.1 %).
BAR_STEPS = 1000


# ----------------------------------------------------------------------------- errors


def error_message(err: BaseException, title: str = "decrappify") -> str:
    """The one line shown to the user for an exception.

    Parameters
    ----------
    err : BaseException
        The error.
    title : str
        What was being done (``"Crappify"`` ...), for unexpected errors.

    Returns
    -------
    str
        The message of a :class:`~decrappify.errors.DecrappifyError` as is; for
        ``MemoryError`` a hint to write to OME-Zarr; otherwise ``"<title> failed:
        <type>: <message>"``.
    """
    if isinstance(err, DecrappifyError):
        return str(err)
    if isinstance(err, MemoryError):
        return f"{title}: out of memory; choose an output folder to write the result to OME-Zarr"
    text = " ".join(str(err).split()) or "no message"
    return f"{title} failed: {type(err).__name__}: {text}"


def notify_error(err: BaseException, title: str = "decrappify") -> str:
    """Show an error as a napari notification (and log it); never raises.

    Parameters
    ----------
    err : BaseException
        The error.
    title : str
        What was being done.

    Returns
    -------
    str
        The message shown.
    """
    message = error_message(err, title)
    if isinstance(err, DecrappifyError):
        logger.error(message)
    else:
        logger.error(message, exc_info=(type(err), err, err.__traceback__))
    show_error(message)
    return message


def report_errors(title: str) -> Callable[[F], F]:
    """Decorate a slot so that any exception becomes a notification (returns None then).

    Parameters
    ----------
    title : str
        What the slot does, for messages of unexpected errors.

    Returns
    -------
    callable
        The decorator.
    """

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return func(*args, **kwargs)
            except Exception as err:
                notify_error(err, title)
                return None

        return wrapper  # type: ignore[return-value]

    return decorate


# ----------------------------------------------------------------------------- worker


def _drive(make_events: EventsFactory) -> Generator[Progress, None, Any]:
    """Create the events generator (in the worker thread) and delegate to it."""
    return (yield from make_events())


class EventWorker(GeneratorWorker):
    """A superqt generator worker that always closes the generator it drives.

    ``worker.quit()`` stops the iteration at the next event; the generator is then
    closed in the worker thread (its ``finally`` blocks run) before ``finished`` is
    emitted. When the generator has already returned, a late ``quit()`` is ignored and
    ``returned`` is emitted with its value.

    Parameters
    ----------
    make_events : callable
        Called without arguments in the worker thread; returns the generator.
    """

    def __init__(self, make_events: EventsFactory) -> None:
        super().__init__(_drive, make_events)

    def work(self) -> Any:
        gen = self._gen
        try:
            while True:
                if self.abort_requested:
                    self.aborted.emit()
                    return None
                try:
                    event = next(gen)
                except StopIteration as stop:
                    self._abort_requested = False  # finished: a late Cancel changes nothing
                    return stop.value
                self.yielded.emit(event)
        finally:
            gen.close()


# ----------------------------------------------------------------------------- panel


class TaskPanel(QWidget):
    """Progress bar, status line and Cancel button driving one operation at a time.

    Parameters
    ----------
    title : str
        Name of the operation in messages (``"Crappify"``).
    parent : QWidget or None
        Parent widget.

    Attributes
    ----------
    worker : EventWorker or None
        The running (or last) worker.
    last_result : object
        Return value of the last operation that finished.
    last_error : str or None
        Message of the last failure.
    state : str
        ``"idle"``, ``"running"``, ``"cancelling"``, ``"done"``, ``"failed"`` or
        ``"cancelled"``.
    """

    #: Emitted with True when an operation starts and False when it has ended.
    running_changed = Signal(bool)
    #: Emitted with each Progress event (main thread).
    progressed = Signal(object)
    #: Emitted with the result of an operation that finished.
    succeeded = Signal(object)
    #: Emitted with the message of an operation that failed.
    failed = Signal(str)
    #: Emitted when an operation was cancelled.
    cancelled = Signal()

    def __init__(self, title: str = "decrappify", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.title = title
        self.worker: EventWorker | None = None
        self.last_result: Any = None
        self.last_error: str | None = None
        self.state = "idle"
        self._callbacks: dict[str, Callable[..., Any] | None] = {}
        self._phase_start = (None, 0.0)

        self.bar = QProgressBar()
        self.bar.setRange(0, BAR_STEPS)
        self.bar.setValue(0)
        self.bar.setTextVisible(True)
        self.bar.setFormat("")
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.setToolTip("Stop at the next step; partial outputs are removed")
        self.cancel_button.clicked.connect(lambda *_: self.cancel())

        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.bar, 1)
        row.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(self.status)

    @property
    def is_running(self) -> bool:
        """Whether an operation is running (or cancelling)."""
        return self.state in ("running", "cancelling")

    def start(
        self,
        make_events: EventsFactory,
        *,
        on_result: Callable[[Any], Any] | None = None,
        on_event: Callable[[Progress], Any] | None = None,
        on_error: Callable[[str], Any] | None = None,
        on_cancelled: Callable[[], Any] | None = None,
        title: str | None = None,
    ) -> EventWorker:
        """Run a generator of progress events in a worker thread.

        Parameters
        ----------
        make_events : callable
            Returns the generator; called in the worker thread.
        on_result : callable, optional
            Called in the main thread with the generator's return value.
        on_event : callable, optional
            Called in the main thread with each event.
        on_error : callable, optional
            Called in the main thread with the message, after the notification.
        on_cancelled : callable, optional
            Called in the main thread after a Cancel has closed the generator.
        title : str, optional
            Name of this operation in messages (default: the panel's title).

        Returns
        -------
        EventWorker
            The started worker.

        Raises
        ------
        RuntimeError
            If an operation is already running.
        """
        if self.is_running:
            raise RuntimeError(f"{self.title}: an operation is already running")
        self._callbacks = {
            "result": on_result,
            "event": on_event,
            "error": on_error,
            "cancelled": on_cancelled,
        }
        self._current_title = title or self.title
        self.last_error = None
        self._aborted = False
        self._returned = False
        self._phase_start = (None, time.perf_counter())
        worker = EventWorker(make_events)
        worker.yielded.connect(self._on_event)
        worker.returned.connect(self._on_returned)
        worker.errored.connect(self._on_errored)
        worker.aborted.connect(self._on_aborted)
        worker.warned.connect(self._on_warned)
        worker.finished.connect(self._on_finished)
        self.worker = worker
        self._set_state("running", f"{self._current_title}: starting")
        self.bar.setRange(0, 0)
        worker.start()
        return worker

    def cancel(self) -> None:
        """Ask the running operation to stop at its next step (no-op when idle)."""
        if self.state != "running" or self.worker is None:
            return
        self.worker.quit()
        self._set_state("cancelling", f"{self._current_title}: cancelling…")

    # -- slots (main thread)

    def _on_event(self, event: Progress) -> None:
        self._show(event)
        self.progressed.emit(event)
        callback = self._callbacks.get("event")
        if callback is not None:
            self._guarded(callback, event)

    def _on_returned(self, value: Any) -> None:
        self._returned = True
        self.last_result = value

    def _on_errored(self, err: BaseException) -> None:
        if isinstance(err, Cancelled):  # the operation stopped itself on request
            self._aborted = True
            return
        self.last_error = notify_error(err, self._current_title)

    def _on_aborted(self) -> None:
        self._aborted = True

    def _on_warned(self, args: tuple[Any, ...]) -> None:
        message = args[0] if args else "warning"
        show_warning(f"{self._current_title}: {message}")

    def _on_finished(self) -> None:
        self.bar.setRange(0, BAR_STEPS)
        if self.last_error is not None:
            self.bar.setValue(0)
            self._set_state("failed", f"Failed: {self.last_error}")
            self.failed.emit(self.last_error)
            self._finish_with("error", self.last_error)
        elif self._aborted or not self._returned:
            self.bar.setValue(0)
            self._set_state("cancelled", f"{self._current_title}: cancelled")
            self.cancelled.emit()
            self._finish_with("cancelled")
        else:
            self.bar.setValue(BAR_STEPS)
            self.bar.setFormat("100%")
            self._set_state("done", f"{self._current_title}: done")
            self.succeeded.emit(self.last_result)
            self._finish_with("result", self.last_result)

    # -- helpers

    def _finish_with(self, key: str, *args: Any) -> None:
        self.running_changed.emit(False)
        callback = self._callbacks.get(key)
        if callback is not None:
            self._guarded(callback, *args)

    def _guarded(self, callback: Callable[..., Any], *args: Any) -> None:
        try:
            callback(*args)
        except Exception as err:
            self.last_error = notify_error(err, self._current_title)

    def _set_state(self, state: str, text: str) -> None:
        was_running = self.is_running
        self.state = state
        self.status.setText(text)
        self.cancel_button.setEnabled(state == "running")
        if self.is_running and not was_running:
            self.running_changed.emit(True)

    def _show(self, event: Progress) -> None:
        now = time.perf_counter()
        if self._phase_start[0] != event.phase:
            self._phase_start = (event.phase, now)
        fraction = event.fraction
        if fraction is None:
            self.bar.setRange(0, 0)
            self.bar.setFormat("")
        else:
            self.bar.setRange(0, BAR_STEPS)
            self.bar.setValue(round(fraction * BAR_STEPS))
            self.bar.setFormat(f"{fraction:.0%}")
        text = f"{event.phase}: {event.message}" if event.message else event.phase
        elapsed = now - self._phase_start[1]
        if fraction and 0 < fraction < 1 and elapsed > 2:
            text += f" ({_duration(elapsed * (1 - fraction) / fraction)} left)"
        if self.state == "running":
            self.status.setText(text)


def _duration(seconds: float) -> str:
    """Short human duration: ``"42 s"``, ``"3 min"``, ``"1 h 05 min"``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = seconds / 60
    if minutes < 90:
        return f"{minutes:.0f} min"
    return f"{int(minutes // 60)} h {int(minutes % 60):02d} min"
