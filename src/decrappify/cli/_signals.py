"""Signals: SIGINT, SIGTERM and SIGHUP stop a command cleanly, and say so in one line."""

from __future__ import annotations

import _thread
import contextlib
import linecache
import queue
import signal
import threading
import time
from concurrent.futures import _base as futures_base
from concurrent.futures import thread as futures_thread
from typing import Any

__all__ = [
    "SIGNAL_WORDS",
    "Interrupted",
    "install_signal_handlers",
    "interruptible",
    "interrupted_message",
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
    stays ignored. A signal that comes where Python's thread machinery cannot unwind
    (:func:`interruptible`) is sent again 10 ms later, until it comes where it can.
    """
    stopping = []

    def stop(signum: int, frame: Any) -> None:
        if stopping:
            return
        if not interruptible(frame):
            # from a bare thread: threading's own would take a lock Thread.start may hold
            _thread.start_new_thread(_signal_main_soon, (signum,))
            return
        stopping.append(signum)
        raise Interrupted(signum)

    for signum in SIGNAL_WORDS:
        if signal.getsignal(signum) is not signal.SIG_IGN:  # nohup ignores SIGHUP: keep it
            signal.signal(signum, stop)


def _signal_main_soon(signum: int) -> None:
    time.sleep(0.01)
    if hasattr(signal, "pthread_kill"):  # a real signal also wakes a wait on a lock
        with contextlib.suppress(OSError):  # the main thread has ended meanwhile
            signal.pthread_kill(threading.main_thread().ident or 0, signum)
    else:  # pragma: no cover - Windows
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
#: Python's thread machinery: an exception raised inside it at an arbitrary step can leave
#: a lock held (``Condition.__exit__`` before it releases) or a waiter unremoved; a thread
#: that needs the lock later (a pool's worker taking its next task) then waits forever.
_MACHINERY = frozenset(
    module.__file__ for module in (threading, queue, futures_base, futures_thread)
)
#: Where the machinery waits and unwinds cleanly: a signal must still stop these waits.
_WAITS = frozenset(
    function.__code__
    for function in (
        threading.Thread.join,
        getattr(threading.Thread, "_wait_for_tstate_lock", None),
    )
    if function is not None
)


def interruptible(frame: Any) -> bool:
    """Tell whether an exception raised in the interrupted code unwinds cleanly.

    Not while a thread is started and booked by its pool (``frame`` or a caller is
    :meth:`threading.Thread.start` or the pool's start-and-book step), and not inside
    the locks, conditions, queues and futures of the standard library, except where they
    wait: ``Condition.wait`` on its waiter (so Ctrl-C still stops ``Queue.get``,
    ``Event.wait`` and ``Future.result``) and ``Thread.join``.

    Parameters
    ----------
    frame : frame or None
        The frame a signal handler was given.

    Returns
    -------
    bool
        Whether the handler may raise now.
    """
    caller = frame
    while caller is not None:
        if caller.f_code in _STARTING_A_THREAD:
            return False
        caller = caller.f_back
    if frame is None or frame.f_code.co_filename not in _MACHINERY:
        return True
    if frame.f_code in _WAITS:
        return True
    waiting = frame.f_code is threading.Condition.wait.__code__
    return waiting and "waiter.acquire(" in linecache.getline(
        frame.f_code.co_filename, frame.f_lineno
    )


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
