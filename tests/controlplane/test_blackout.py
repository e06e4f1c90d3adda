"""Blackout windows of the scheduled drills: which days each covers (pure functions)."""

from __future__ import annotations

import datetime as dt

import pytest

from controlplane import blackout

D = dt.date.fromisoformat


@pytest.mark.parametrize("window, day, covered", [
    # November 2026 ends on Monday 30: its last three business days are Thu 26, Fri 27, Mon 30
    ("month-end", "2026-11-25", False),
    ("month-end", "2026-11-26", True),
    ("month-end", "2026-11-28", True),   # the weekend inside the close
    ("month-end", "2026-11-30", True),
    ("month-end:1", "2026-11-27", False),
    ("month-end:1", "2026-11-30", True),
    ("month-end:1", "2026-10-30", True),  # October 2026 ends on a Saturday: Friday 30 is its last business day
    ("month-start:2", "2026-11-03", True),  # November 1 is a Sunday: business days Mon 2, Tue 3
    ("month-start:2", "2026-11-04", False),
    ("day:25", "2026-12-25", True),
    ("day:25", "2026-12-24", False),
    ("day:31", "2026-02-28", True),      # a month shorter than the day: its last day
    ("day:28-31", "2026-02-27", False),
    ("2026-12-24..2027-01-03", "2027-01-01", True),
    ("2026-12-24..2027-01-03", "2027-01-04", False),
    ("2026-12-24", "2026-12-24", True),
])
def test_which_days_a_window_covers(window, day, covered):
    assert blackout.parse(window).covers(D(day)) is covered


def test_a_named_window_is_the_reason_a_drill_gives():
    windows = blackout.parse_all(["month-end", "payroll=day:25"])
    assert [str(w) for w in windows] == ["month-end", "payroll=day:25"]
    found = blackout.blocking(D("2026-11-25"), windows)
    assert found.name == "payroll"
    assert blackout.reason(found, D("2026-11-25")) == "2026-11-25 is in the blackout window payroll (day:25)"
    assert blackout.blocking(D("2026-11-24"), windows) is None
    assert blackout.parse_all("month-end, day:1") == blackout.parse_all(["month-end", "day:1"])  # the env's form


@pytest.mark.parametrize("bad", ["month-end:0", "day:32", "day:20-10", "2026-02-30", "2027-01-02..2026-12-01",
                                 "weekends", "pay roll=day:1"])
def test_a_window_that_is_not_one_is_refused_saying_what_is_expected(bad):
    with pytest.raises(ValueError) as exc:
        blackout.parse(bad)
    assert repr(bad) in str(exc.value) or bad in str(exc.value)
