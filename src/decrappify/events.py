"""Progress events: what every long operation yields to the CLI and napari shells.

Long work (crappifying a stack, each training phase, tiled prediction) is written as
a generator of :class:`Progress` events. The CLI drives it with a progress bar; napari
drives the same generator in a ``thread_worker`` where each ``yield`` updates the bar
and is the point where Cancel takes effect (closing the generator runs its
``finally`` blocks, which remove temporary outputs).
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Progress:
    """One step of a long operation.

    Parameters
    ----------
    phase : str
        Name of the current phase or task (``"crappify"``, ``"pretrain-generator"``,
        ``"predict"`` ...).
    step : int
        Steps done in this phase so far.
    total : int or None
        Steps in this phase, or None if unknown.
    message : str
        Short human-readable status (file name, what is happening).
    losses : dict of str to float
        Latest training losses, if any.
    metrics : dict of str to float
        Latest validation metrics (``"psnr"``, ``"ssim"`` ...), if any.
    preview : numpy.ndarray or None
        Optional small image to show (for example LR | prediction | HR side by side).
    info : dict
        Anything else a shell may want to show (pixels/s, file index, ...).
    """

    phase: str
    step: int
    total: int | None = None
    message: str = ""
    losses: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    preview: Any = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def fraction(self) -> float | None:
        """Fraction of the phase done, in [0, 1], or None when the total is unknown."""
        if not self.total:
            return None
        return min(1.0, max(0.0, self.step / self.total))


def run_to_end(events: Generator[Progress, None, T] | Iterator[Progress]) -> T | None:
    """Drive a generator of progress events to completion and return its result.

    Parameters
    ----------
    events : generator
        A generator that yields :class:`Progress` events and may ``return`` a value.

    Returns
    -------
    object
        The generator's return value (``StopIteration.value``).
    """
    while True:
        try:
            next(events)
        except StopIteration as stop:
            return stop.value
