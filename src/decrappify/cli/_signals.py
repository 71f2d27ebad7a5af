"""Signals: SIGINT, SIGTERM and SIGHUP stop a command cleanly, and say so in one line."""

from __future__ import annotations

import _thread
import signal
import threading
import time
from concurrent.futures import thread as futures_thread
from typing import Any

__all__ = [
    "SIGNAL_WORDS",
    "Interrupted",
    "install_signal_handlers",
    "interrupted_message",
    "starting_a_thread",
]


class Interrupted(KeyboardInterrupt):
    """A stop asked by a signal: SIGINT (Ctrl-C), SIGTERM (a job's time limit), SIGHUP.

    A subclass of ``KeyboardInterrupt``, so every clean-up written for Ctrl-C runs for
    the other two as well.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


#: How the one-line message names each signal.
SIGNAL_WORDS = {
    signal.SIGINT: "interrupted (Ctrl-C)",
    signal.SIGTERM: "stopped by SIGTERM (a job time limit, kill or scancel)",
}
if hasattr(signal, "SIGHUP"):
    SIGNAL_WORDS[signal.SIGHUP] = "stopped by SIGHUP (the terminal or ssh session closed)"


def install_signal_handlers() -> None:
    """Make SIGTERM and SIGHUP stop a command as Ctrl-C does: cleanly, said plainly.

    The first signal raises :class:`Interrupted` in the main thread, so the same
    clean-up runs as for Ctrl-C (outputs half-written are deleted, resumable ones kept)
    and the exit status is 128 + the signal number (130, 143, 129). Signals that come
    while that clean-up runs are ignored, so a second Ctrl-C or a repeated SIGTERM does
    not cut it short. A signal the parent told it to ignore (``nohup`` ignores SIGHUP)
    stays ignored. A signal that comes while the main thread starts a thread of a pool
    is raised a few steps later, once the pool has booked the thread
    (:func:`starting_a_thread`).
    """
    stopping = []

    def stop(signum: int, frame: Any) -> None:
        if stopping:
            return
        if starting_a_thread(frame):
            # asked again in a moment, from a bare thread (threading's would take a lock
            # that Thread.start may hold)
            _thread.start_new_thread(_interrupt_main_soon, (signum,))
            return
        stopping.append(signum)
        raise Interrupted(signum)

    for signum in SIGNAL_WORDS:
        if signal.getsignal(signum) is not signal.SIG_IGN:  # nohup ignores SIGHUP: keep it
            signal.signal(signum, stop)


def _interrupt_main_soon(signum: int) -> None:
    time.sleep(0.01)
    _thread.interrupt_main(signum)


#: Code that starts a pool's thread and books it. An exception raised inside leaves a thread
#: running that its pool does not know: nothing wakes it when the pool is shut down, and
#: Python's exit waits for it forever (dask's own pool, whose first thread starts at the
#: first block of a prediction, hung a stopped ``predict --resume`` so).
_STARTING_A_THREAD = frozenset(
    function.__code__
    for function in (
        threading.Thread.start,
        getattr(futures_thread.ThreadPoolExecutor, "_adjust_thread_count", None),
    )
    if function is not None
)


def starting_a_thread(frame: Any) -> bool:
    """Tell whether the interrupted code is starting a thread (of a pool, or not).

    Parameters
    ----------
    frame : frame or None
        The frame a signal handler was given.

    Returns
    -------
    bool
        True when ``frame`` or one of its callers is :meth:`threading.Thread.start` or
        the thread pool's own start-and-book step.
    """
    while frame is not None:
        if frame.f_code in _STARTING_A_THREAD:
            return True
        frame = frame.f_back
    return False


def interrupted_message(error: BaseException) -> tuple[str, int]:
    """The line to print for an interrupted command, and its exit status.

    Parameters
    ----------
    error : KeyboardInterrupt
        The interruption; its notes (added by the core as it unwound) say which inputs
        finished and what was kept for ``--resume``.

    Returns
    -------
    tuple of (str, int)
        ``"stopped by SIGTERM (...); 2 of 5 inputs finished (a.tif, b.tif); nothing
        half-written was left behind"`` and ``143``.
    """
    signum = int(getattr(error, "signum", signal.SIGINT))
    notes = list(getattr(error, "__notes__", []))
    if not any(word in note for note in notes for word in ("kept", "keeps", "nothing half")):
        notes.append("nothing half-written was left behind")
    return "; ".join(
        [SIGNAL_WORDS.get(signum, f"stopped by signal {signum}"), *notes]
    ), 128 + signum
