"""Posting journal entries (immutable once posted) and reversing them."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..domain import journal
from ..domain.money import D
from ..errors import Conflict, ValidationFailed
from ..models import Account, JournalEntry, JournalLine, Partner
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
    entry = JournalEntry(date=date or dt.date.today(), memo=memo[:300], source=source, reverses_id=reverses_id,
                         created_by=s.info.get("actor", "system"))
    entry.lines = [JournalLine(account_code=l.account, partner_id=l.partner_id, debit=l.debit, credit=l.credit,
                               currency=l.currency, amount_currency=l.amount_currency)
                   for l in map(journal.in_currency, lines)]
    entry.number = next_number(s, "JE")  # last: the series' row is locked from here to the commit
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
    kept = sorted({l.account_code for l in entry.lines} & journal.CONTROL_ACCOUNTS.keys())
    if kept:
        raise Conflict(f"journal entry {entry.number} books on {', '.join(kept)}, kept by "
                       f"{journal.CONTROL_ACCOUNTS[kept[0]]}: a reversal would leave the ledger and its "
                       "subledger apart.", fix="Correct it through its document (an order, invoice, bill or "
                                               "stocktake) instead.")
    lines = journal.reversal([journal.Line(l.account_code, l.debit, l.credit, l.partner_id, l.currency,
                                           l.amount_currency) for l in entry.lines])
    return post(s, f"reversal:{entry.number}", memo or f"Reversal of {entry.number}", lines, date,
                reverses_id=entry.id)


def manual_entry(s: Session, memo: str, lines: list[dict], date: dt.date | None = None) -> JournalEntry:
    """A hand-posted entry (opening balances, accruals); accounts must exist."""
    known = set(s.scalars(select(Account.code)))
    partners = {l.get("partner_id") for l in lines} - {None}
    partners -= set(s.scalars(select(Partner.id).where(Partner.id.in_(partners)))) if partners else set()
    for i, l in enumerate(lines):
        if l["account"] not in known:
            raise ValidationFailed(f"account {l['account']!r} does not exist", field=f"lines.{i}.account",
                                   fix="Use a code from GET /api/v1/accounts.")
        if l["account"] in journal.CONTROL_ACCOUNTS:
            raise ValidationFailed(f"account {l['account']} is kept by {journal.CONTROL_ACCOUNTS[l['account']]}; "
                                   "only their documents post to it", field=f"lines.{i}.account",
                                   fix="Post the document (order, invoice, bill, stocktake) that moves it.")
        if l.get("partner_id") in partners:
            raise ValidationFailed(f"partner {l['partner_id']} does not exist", field=f"lines.{i}.partner_id",
                                   fix="Use the id of an existing partner, or leave partner_id out.")
    return post(s, "manual", memo, [journal.Line(l["account"], D(l.get("debit", 0)), D(l.get("credit", 0)),
                                                 l.get("partner_id")) for l in lines], date)
