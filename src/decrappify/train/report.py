"""What a training run tells: progress events, notes in its history, ``log.csv`` rows, curves.

:class:`Reporter` turns what the phases do into the run's record: the
:class:`~decrappify.events.Progress` events the shells show, the notes and validation
results of the run state's history (which go into the model's metadata), the rows of
``log.csv`` and ``curves.png`` (:mod:`.training_log`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from decrappify.errors import OutputError
from decrappify.events import Progress
from decrappify.train.clock import Clock
from decrappify.train.folder import CURVES_NAME, LOG_NAME
from decrappify.train.state import RunState, history_record
from decrappify.train.training_log import RunLog, plot_curves, read_log

__all__ = ["Reporter"]

log = logging.getLogger("decrappify")


class Reporter:
    """Events, history notes, log rows and curves of one training run.

    Parameters
    ----------
    run_dir : Path
        The run folder (``log.csv``, ``curves.png``).
    state : RunState
        The run state (its cycle, step and baseline label the events; notes go into its
        history).
    clock : Clock
        The run's clock (elapsed time of events, rows and validations).
    cycles : int
        Cycles of phases 2-4 (labels ``"gan 1/2"`` when more than one).
    baseline_name : str
        The validation baseline (``"bicubic"``, or ``"input"`` at scale 1).
    validation : bool
        Whether the run has validation crops (events then carry the baseline).
    keep_rows : int or None
        Rows of an existing ``log.csv`` to keep (resume), None for a new log.
    writes : bool
        Whether this process writes ``log.csv``, ``curves.png`` and logs the notes (process
        0 of a run on several processes; the others keep the history alone).
    """

    def __init__(
        self,
        run_dir: Path,
        state: RunState,
        clock: Clock,
        *,
        cycles: int,
        baseline_name: str,
        validation: bool,
        keep_rows: int | None,
        writes: bool = True,
    ) -> None:
        self.run_dir = run_dir
        self.state = state
        self.clock = clock
        self.cycles = cycles
        self.baseline_name = baseline_name
        self.validation = validation
        self.writes = writes
        self.log = RunLog(run_dir / LOG_NAME, keep_rows=keep_rows) if writes else None

    @property
    def rows(self) -> int:
        """Data rows of ``log.csv`` so far (flushed to disk)."""
        if self.log is None:
            return 0
        self.log.flush()
        return self.log.rows

    def label(self, phase: str) -> str:
        """Name the phase as the events do (``"gan 1/2"`` with several cycles)."""
        if phase == "pretrain_generator" or self.cycles == 1:
            return phase
        return f"{phase} {self.state.cycle + 1}/{self.cycles}"

    def event(
        self,
        phase: str,
        step: int,
        total: int | None,
        *,
        losses: dict[str, float] | None = None,
        metrics: dict[str, float] | None = None,
        preview: np.ndarray | None = None,
        message: str = "",
        info: dict[str, Any] | None = None,
    ) -> Progress:
        """Make a progress event of the run (``info`` gets the cycle, elapsed time and baseline)."""
        base: dict[str, Any] = {
            "cycle": self.state.cycle,
            "elapsed_s": round(self.clock.elapsed(), 1),
        }
        if self.validation:
            base["baseline"] = dict(self.state.baseline)
            base["baseline_name"] = self.baseline_name
        return Progress(
            phase=self.label(phase),
            step=step,
            total=total,
            message=message,
            losses=losses or {},
            metrics=metrics or {},
            preview=preview,
            info={**base, **(info or {})},
        )

    def note(self, text: str, *, detail: bool = False, **extra: Any) -> None:
        """Add a note to the run's history (and the log: at DEBUG when it is a ``detail``)."""
        st = self.state
        st.history.append({"phase": st.phase, "cycle": st.cycle, "note": text, **extra})
        if self.writes:
            log.log(logging.DEBUG if detail else logging.INFO, text)

    def record_validation(self, phase: str, metrics: dict[str, float]) -> None:
        """Add a validation result to the run's history."""
        if metrics:
            st = self.state
            st.history.append(
                {
                    "phase": phase,
                    "cycle": st.cycle,
                    "step": st.step,
                    **{k: round(v, 5) for k, v in metrics.items()},
                    "time_s": round(self.clock.elapsed(), 1),
                }
            )

    def row(self, phase: str, **values: Any) -> None:
        """Append a row to ``log.csv`` (time, phase, cycle and step filled in)."""
        if self.log is None:
            return
        self.log.write(
            time_s=round(self.clock.elapsed(), 2),
            phase=phase,
            cycle=self.state.cycle,
            step=self.state.step,
            **values,
        )

    def write_curves(self) -> None:
        """Draw ``curves.png`` from ``log.csv`` (a failure is a warning, never an error)."""
        if self.log is None:
            return
        try:
            self.log.flush()
            plot_curves(
                read_log(self.run_dir / LOG_NAME),
                self.run_dir / CURVES_NAME,
                baseline=self.state.baseline or None,
                baseline_name=self.baseline_name,
                classical=(history_record(self.state.history, "self_check") or {}).get("baselines"),
                title=f"NoGAN training: {self.run_dir.name}",
            )
        except (OSError, OutputError) as err:  # a figure must never stop a run
            log.warning(f"{self.run_dir / CURVES_NAME}: could not draw the curves ({err})")

    def close(self) -> None:
        """Close ``log.csv``."""
        if self.log is not None:
            self.log.close()
