"""Blackout windows: the days scheduled drills do not run (month-end close, payroll day, a freeze).

`[drill] blackout` in erpctl.toml (or ERPCTL_DRILL_BLACKOUT, comma-separated) is a list of windows, each
optionally named `NAME=WINDOW` (the name is the reason a skipped drill gives):

    month-end        from the 3rd last business day (Monday to Friday) of every month to its end
    month-end:N      from the Nth last business day of every month to its end
    month-start:N    from the 1st of every month to its Nth business day (month-start alone: 3)
    day:D            day D of every month (day:25, payroll); a month shorter than D: its last day
    day:D-E          days D to E of every month
    YYYY-MM-DD       one date
    YYYY-MM-DD..YYYY-MM-DD   the dates from the first to the second, both included

e.g. blackout = ["month-end", "payroll=day:25", "year-end=2026-12-24..2027-01-03"]. Days are the
scheduler's (its time zone, [scheduler] timezone). Pure functions: no clock, no I/O.
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
from dataclasses import dataclass

DEFAULT_BUSINESS_DAYS = 3
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_DAY = re.compile(r"^day:(\d{1,2})(?:-(\d{1,2}))?$")
_EDGE = re.compile(r"^(month-end|month-start)(?::(\d{1,2}))?$")
_DATES = re.compile(r"^(\d{4}-\d{2}-\d{2})(?:\.\.(\d{4}-\d{2}-\d{2}))?$")
HELP = ("month-end[:N], month-start[:N] (business days), day:D or day:D-E (of every month), YYYY-MM-DD or "
        "YYYY-MM-DD..YYYY-MM-DD; optionally named NAME=WINDOW")


@dataclass(frozen=True)
class Blackout:
    name: str
    window: str                 # as written, without the name
    kind: str                   # month-end | month-start | day | dates
    low: int | dt.date = 0      # business days (month-*), first day (day), first date (dates)
    high: int | dt.date = 0     # last day (day), last date (dates)

    def __str__(self) -> str:
        return self.window if self.name == self.window else f"{self.name}={self.window}"

    def covers(self, day: dt.date) -> bool:
        if self.kind == "dates":
            return self.low <= day <= self.high
        last = calendar.monthrange(day.year, day.month)[1]
        if self.kind == "day":
            return min(self.low, last) <= day.day <= min(self.high, last)
        business = [d for d in range(1, last + 1) if dt.date(day.year, day.month, d).weekday() < 5]
        if self.kind == "month-end":  # from the Nth last business day to the month's end, weekends included
            return day.day >= business[-self.low]
        return day.day <= business[self.low - 1]


def parse(text: str) -> Blackout:
    """One window (ValueError saying what is expected when it is not one)."""
    raw = str(text).strip()
    name, eq, window = raw.partition("=")
    if not eq:
        name, window = "", raw
    name, window = name.strip(), window.strip()
    if eq and not _NAME.match(name):
        raise ValueError(f"{raw!r}: the name before '=' must be letters, digits, '-' or '_'")
    if m := _EDGE.match(window):
        n = int(m.group(2) or DEFAULT_BUSINESS_DAYS)
        if not 1 <= n <= 23:
            raise ValueError(f"{raw!r}: the number of business days must be from 1 to 23")
        return Blackout(name or m.group(1), window, m.group(1), n)
    if m := _DAY.match(window):
        low, high = int(m.group(1)), int(m.group(2) or m.group(1))
        if not 1 <= low <= high <= 31:
            raise ValueError(f"{raw!r}: days of the month from 1 to 31, the first not after the last")
        return Blackout(name or window, window, "day", low, high)
    if m := _DATES.match(window):
        try:
            low = dt.date.fromisoformat(m.group(1))
            high = dt.date.fromisoformat(m.group(2) or m.group(1))
        except ValueError:
            raise ValueError(f"{raw!r}: not a real date") from None
        if high < low:
            raise ValueError(f"{raw!r}: the range ends before it starts")
        return Blackout(name or window, window, "dates", low, high)
    raise ValueError(f"{raw!r} is not a blackout window ({HELP})")


def parse_all(raw) -> tuple[Blackout, ...]:
    """A list of windows (a TOML list, or one comma-separated string)."""
    if raw is None or raw == "":
        return ()
    items = raw.split(",") if isinstance(raw, str) else raw
    if not isinstance(items, (list, tuple)):
        raise ValueError(f"a list of blackout windows ({HELP})")
    return tuple(parse(item) for item in items if str(item).strip())


def blocking(day: dt.date, windows) -> Blackout | None:
    """The first window that covers `day`, None when drills may run."""
    return next((w for w in windows if w.covers(day)), None)


def reason(window: Blackout, day: dt.date) -> str:
    return f"{day.isoformat()} is in the blackout window {window.name} ({window.window})"
