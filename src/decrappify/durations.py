"""Durations as people type them (``"20m"``, ``"1h30m"``, ``"90s"``) and as we print them (pure).

Used by every layer that speaks of wall-clock time: the ``--time-budget`` / ``--budget``
options of the shells, ``TrainConfig.time_budget`` (a YAML file may say ``"20m"``), the
training run's budget notes and the model summary of ``decrappify info``.
"""

from __future__ import annotations

import math
import re
from typing import Any

from decrappify.errors import InputError

__all__ = [
    "DURATION_HELP",
    "MAX_DURATION_SECONDS",
    "duration_seconds",
    "format_duration",
    "parse_duration",
]

#: Longest duration accepted (30 days).
MAX_DURATION_SECONDS = 30 * 24 * 3600.0

DURATION_HELP = "expected seconds or a duration such as '20m', '1h30m', '90s' or '1.5h'"

_DURATION = re.compile(
    r"^\s*(?:(?P<h>\d+(?:\.\d*)?)\s*h)?\s*(?:(?P<m>\d+(?:\.\d*)?)\s*m(?:in)?)?"
    r"\s*(?:(?P<s>\d+(?:\.\d*)?)\s*s)?\s*$",
    re.IGNORECASE,
)


def parse_duration(value: Any, name: str = "time_budget") -> float:
    """Turn a duration into seconds.

    Parameters
    ----------
    value : float, int or str
        Seconds as a number (or a numeric string), or hours, minutes and seconds:
        ``"20m"``, ``"1h30m"``, ``"90s"``, ``"1.5h"``, ``"2h 5min"``.
    name : str
        What the value is called where the user typed it (``"--time-budget"``), for
        the message.

    Returns
    -------
    float
        Seconds, > 0.

    Raises
    ------
    InputError
        If the value is not a positive duration of at most 30 days.
    """
    seconds, problem = duration_seconds(value)
    if problem:
        raise InputError(f"{name}: {problem} (got {value!r})")
    return seconds


def duration_seconds(value: Any) -> tuple[float, str]:
    """Return ``(seconds, "")``, or ``(nan, what is wrong)`` (for pydantic validators)."""
    seconds = math.nan
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            match = _DURATION.match(text)
            if match and any(match.groupdict().values()):
                parts = {k: float(v) if v else 0.0 for k, v in match.groupdict().items()}
                seconds = 3600.0 * parts["h"] + 60.0 * parts["m"] + parts["s"]
    if not math.isfinite(seconds):
        return math.nan, DURATION_HELP
    if not 0.0 < seconds <= MAX_DURATION_SECONDS:
        return math.nan, "must be more than 0 s and at most 30 days"
    return seconds, ""


def format_duration(seconds: float) -> str:
    """Format seconds as ``"1h30m"``, ``"20m"`` or ``"45s"`` (what :func:`parse_duration` reads)."""
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [
        f"{hours}h" if hours else "",
        f"{minutes}m" if minutes else "",
        f"{secs}s" if secs else "",
    ]
    return "".join(parts) or "0s"
