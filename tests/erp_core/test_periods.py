"""Ledger period balances: kept by the database with each posted line, the reports read whole months
from them and part-months from the lines, with the same figures as summing every line; a database
with history gets them built once. SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from sqlalchemy import delete, select

from erp_core import ops
from erp_core.db import Database
from erp_core.models import Account, LedgerPeriodBalance, SystemSetting
from erp_core.services import ledger, periods, reports

from ..conftest import fresh_database_url

DAYS = [dt.date(2026, 1, 31), dt.date(2026, 2, 1), dt.date(2026, 2, 14), dt.date(2026, 2, 28),
        dt.date(2026, 3, 1), dt.date(2026, 3, 17)]
RANGES = [(None, None), (dt.date(2026, 2, 1), dt.date(2026, 2, 28)), (dt.date(2026, 2, 10), dt.date(2026, 3, 20)),
          (None, dt.date(2026, 2, 20)), (dt.date(2026, 1, 15), None), (dt.date(2026, 2, 2), dt.date(2026, 2, 27))]


def figures(s):
    return [(reports.trial_balance(s, to, since), reports.profit_and_loss(s, since, to)) for since, to in RANGES]


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_reports_from_period_balances_equal_the_lines(backend, request, tmp_path):
    url = fresh_database_url(backend, request, tmp_path)
    db = Database(url)
    try:
        with db.session() as s:
            assert periods.complete(s)  # migrated without history: complete from the start
            asset, income = (s.scalar(select(Account.code).where(Account.type == t).order_by(Account.code))
                             for t in ("asset", "income"))
            for i, day in enumerate(DAYS):
                amount = Decimal("10.01") * (i + 1)
                ledger.manual_entry(s, f"sale {i}", [{"account": asset, "debit": amount},
                                                     {"account": income, "credit": amount}], day)
        with db.session() as s:
            feb = s.get(LedgerPeriodBalance, (asset, "2026-02"))
            assert (feb.debit_cents, feb.credit_cents) == (2002 + 3003 + 4004, 0)
            from_balances = figures(s)
            month = reports.trial_balance(s, dt.date(2026, 2, 28), dt.date(2026, 2, 1))
            assert [(r["code"], r["debit"], r["credit"]) for r in month["rows"]] == \
                [(asset, Decimal("90.09"), 0), (income, 0, Decimal("90.09"))]
            s.execute(delete(SystemSetting).where(SystemSetting.key == periods.PERIOD_BALANCES_KEY))
            s.execute(delete(LedgerPeriodBalance))
        with db.session() as s:
            assert not periods.complete(s) and figures(s) == from_balances  # the lines alone agree
        assert ops.complete_period_balances(url) == 6  # two accounts x three months
        assert ops.complete_period_balances(url) is None
        with db.session() as s:
            assert periods.complete(s) and figures(s) == from_balances
            assert s.get(LedgerPeriodBalance, (asset, "2026-02")).debit_cents == 9009
    finally:
        db.dispose()
