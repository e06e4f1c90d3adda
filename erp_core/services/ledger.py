"""Posting journal entries (immutable once posted) and reversing them."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..domain import journal
from ..domain.money import D
from ..errors import Conflict, ValidationFailed
from ..models import Account, JournalEntry, JournalLine
from .common import full, get_or_404, next_number


def post(s: Session, source: str, memo: str, lines: list[journal.Line],
         date: dt.date | None = None, reverses_id: int | None = None) -> JournalEntry | None:
    """Post balanced lines as one entry; returns None for an event worth nothing (no lines)."""
    if not lines:
        return None
    try:
        journal.check_balanced(lines)
    except journal.Unbalanced as exc:
        raise ValidationFailed(f"journal entry does not balance: {exc}",
                               fix="Make debits equal credits, one side per line.") from None
    entry = JournalEntry(number=next_number(s, "JE"), date=date or dt.date.today(), memo=memo[:300],
                         source=source, reverses_id=reverses_id,
                         created_by=s.info.get("actor", "system"))
    entry.lines = [JournalLine(account_code=l.account, partner_id=l.partner_id, debit=l.debit, credit=l.credit,
                               currency=l.currency, amount_currency=l.amount_currency)
                   for l in map(journal.in_currency, lines)]
    s.add(entry)
    s.flush()
    return entry


def reverse(s: Session, entry_id: int, memo: str = "", date: dt.date | None = None) -> JournalEntry:
    """Correct a posted entry by posting its mirror image."""
    entry = get_or_404(s, JournalEntry, entry_id, "journal entry", options=full(JournalEntry))
    if s.scalar(select(JournalEntry.id).where(JournalEntry.reverses_id == entry.id)):
        raise Conflict(f"journal entry {entry.number} is already reversed.",
                       fix="Post a new entry if a further correction is needed.")
    if entry.reverses_id is not None:
        raise Conflict(f"journal entry {entry.number} is itself a reversal.",
                       fix="Post a new entry instead of reversing a reversal.")
    lines = journal.reversal([journal.Line(l.account_code, l.debit, l.credit, l.partner_id, l.currency,
                                           l.amount_currency) for l in entry.lines])
    return post(s, f"reversal:{entry.number}", memo or f"Reversal of {entry.number}", lines, date,
                reverses_id=entry.id)


def manual_entry(s: Session, memo: str, lines: list[dict], date: dt.date | None = None) -> JournalEntry:
    """A hand-posted entry (opening balances, accruals); accounts must exist."""
    known = set(s.scalars(select(Account.code)))
    for i, l in enumerate(lines):
        if l["account"] not in known:
            raise ValidationFailed(f"account {l['account']!r} does not exist", field=f"lines.{i}.account",
                                   fix="Use a code from GET /api/v1/accounts.")
    return post(s, "manual", memo, [journal.Line(l["account"], D(l.get("debit", 0)), D(l.get("credit", 0)),
                                                 l.get("partner_id")) for l in lines], date)
