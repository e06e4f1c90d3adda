"""Ledger sums per account over a date range, from the period balances where whole months allow.

ledger_period_balances (account x month, whole cents) is kept by a trigger on journal_lines inserts
(migration 0005), in the posting's transaction. A range's whole months are summed from it (time in
proportion to accounts x months, not to lines); the part-months at its ends are summed from the lines
of the entries dated there (the journal_entries.date index, then journal_lines.entry_id): time in
proportion to those days' lines. Until the balances are complete (system setting
PERIOD_BALANCES_KEY: a database migrated with history needs `rebuild` once) everything comes
from the lines.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict

from sqlalchemy import delete, func, select, text
from sqlalchemy.orm import Session

from ..invariants import cents
from ..models import JournalEntry, JournalLine, LedgerPeriodBalance, SystemSetting

PERIOD_BALANCES_KEY = "ledger_period_balances"


def complete(s: Session) -> bool:
    """Whether the period balances hold every journal line (else the reports sum the lines)."""
    return s.scalar(select(SystemSetting.value).where(SystemSetting.key == PERIOD_BALANCES_KEY)) == "complete"


def _month_start(d: dt.date) -> dt.date:
    return d.replace(day=1)


def _next_month(d: dt.date) -> dt.date:
    return (d.replace(day=28) + dt.timedelta(days=4)).replace(day=1)


def whole_months(date_from: dt.date | None, date_to: dt.date | None):
    """(first, last): the month starts of the first and last whole months inside [date_from, date_to]
    (None: unbounded on that side), or None if no whole month is inside."""
    first = None if date_from is None else date_from if date_from.day == 1 else _next_month(date_from)
    last = None if date_to is None else _month_start(_month_start(date_to + dt.timedelta(days=1))
                                                     - dt.timedelta(days=1))
    if first is not None and last is not None and first > last:
        return None
    return first, last


def lines_statement(date_from: dt.date | None, date_to: dt.date | None):
    """Debit and credit cents per account of the lines of entries dated in [date_from, date_to]."""
    stmt = (select(JournalLine.account_code, func.sum(cents(JournalLine.debit)), func.sum(cents(JournalLine.credit)))
            .select_from(JournalEntry).join(JournalLine, JournalLine.entry_id == JournalEntry.id)
            .group_by(JournalLine.account_code))
    if date_from is not None:
        stmt = stmt.where(JournalEntry.date >= date_from)
    if date_to is not None:
        stmt = stmt.where(JournalEntry.date <= date_to)
    return stmt


def _from_lines(s: Session, date_from: dt.date | None, date_to: dt.date | None) -> dict[str, list[int]]:
    return {code: [int(d or 0), int(c or 0)] for code, d, c in s.execute(lines_statement(date_from, date_to))}


def _from_balances(s: Session, first: dt.date | None, last: dt.date | None) -> dict[str, list[int]]:
    b = LedgerPeriodBalance
    stmt = select(b.account_code, func.sum(b.debit_cents), func.sum(b.credit_cents)).group_by(b.account_code)
    if first is not None:
        stmt = stmt.where(b.period >= f"{first:%Y-%m}")
    if last is not None:
        stmt = stmt.where(b.period <= f"{last:%Y-%m}")
    return {code: [int(d or 0), int(c or 0)] for code, d, c in s.execute(stmt)}


def account_cents(s: Session, date_from: dt.date | None = None, date_to: dt.date | None = None) -> dict[str, list[int]]:
    """{account code: [debit cents, credit cents]} over entries dated in [date_from, date_to]."""
    months = whole_months(date_from, date_to) if complete(s) else None
    if months is None:
        return _from_lines(s, date_from, date_to)
    first, last = months
    out: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    parts = [_from_balances(s, first, last)]
    if first is not None and date_from is not None and date_from < first:
        parts.append(_from_lines(s, date_from, first - dt.timedelta(days=1)))
    if last is not None and date_to is not None and date_to >= _next_month(last):
        parts.append(_from_lines(s, _next_month(last), date_to))
    for part in parts:
        for code, (d, c) in part.items():
            out[code][0] += d
            out[code][1] += c
    return dict(out)


def rebuild(s: Session) -> int:
    """Recompute every period balance from the journal lines and mark them complete; returns the
    balances written. On PostgreSQL journal_lines is locked in SHARE mode first (no line can be
    posted meanwhile; readers go on); on SQLite the write transaction holds the write lock."""
    if s.get_bind().dialect.name == "postgresql":
        s.execute(text("LOCK TABLE journal_lines IN SHARE MODE"))
    s.execute(delete(LedgerPeriodBalance))
    month = (func.to_char(JournalEntry.date, "YYYY-MM") if s.get_bind().dialect.name == "postgresql"
             else func.substr(JournalEntry.date, 1, 7))
    rows = s.execute(select(JournalLine.account_code, month, func.sum(cents(JournalLine.debit)),
                            func.sum(cents(JournalLine.credit)))
                     .select_from(JournalEntry).join(JournalLine, JournalLine.entry_id == JournalEntry.id)
                     .group_by(JournalLine.account_code, month)).all()
    if rows:
        s.execute(LedgerPeriodBalance.__table__.insert(),
                  [{"account_code": a, "period": p, "debit_cents": int(d), "credit_cents": int(c)} for a, p, d, c in rows])
    setting = s.get(SystemSetting, PERIOD_BALANCES_KEY)
    if setting is None:
        s.add(SystemSetting(key=PERIOD_BALANCES_KEY, value="complete"))
    else:
        setting.value = "complete"
    s.flush()
    return len(rows)
