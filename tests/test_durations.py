"""Tests for decrappify.durations: reading and writing durations such as "1h30m"."""

from __future__ import annotations

import pytest

from decrappify.durations import format_duration, parse_duration
from decrappify.errors import InputError


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("20m", 1200.0),
        ("1h30m", 5400.0),
        ("90s", 90.0),
        ("1.5h", 5400.0),
        ("2h 5min", 7500.0),
        ("1h0m30s", 3630.0),
        (" 45 ", 45.0),
        (12, 12.0),
        (0.5, 0.5),
        ("20M", 1200.0),
    ],
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["abc", "20x", "", "m", "-5", "1h-3m", True, None, [1]])
def test_parse_duration_rejects(text):
    with pytest.raises(InputError, match=r"^time_budget: "):
        parse_duration(text)


def test_parse_duration_bounds_message():
    with pytest.raises(InputError) as err:
        parse_duration("0s")
    assert str(err.value) == "time_budget: must be more than 0 s and at most 30 days (got '0s')"
    with pytest.raises(InputError, match="at most 30 days"):
        parse_duration("31d" if False else 31 * 24 * 3600)


@pytest.mark.parametrize(
    ("seconds", "text"), [(5400, "1h30m"), (1200, "20m"), (45.4, "45s"), (0, "0s")]
)
def test_format_duration_round_trips(seconds, text):
    assert format_duration(seconds) == text
    if seconds:
        assert parse_duration(format_duration(seconds)) == round(seconds)
