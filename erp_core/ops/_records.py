"""What the books hold, read for operators: writes since a point of the audit log, the document
numbering, and the documents a restored copy is compared with."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import func, select

from ..invariants import cents
from ..models import AuditLog, DocSequence, Invoice, JournalLine, SalesOrder
from ._bind import session_on

__all__ = ["writes_since", "numbering_state", "document_ids", "sales_order_facts", "invoice_facts",
           "journal_totals"]


def _audit_position(s, audit_rows: int | None, at: dt.datetime | None):
    """The condition for entries after the point: the first `audit_rows` entries (the log is
    append-only: a copy taken with that many holds exactly those), or the time `at`."""
    if audit_rows is not None:
        last = s.scalar(select(AuditLog.id).order_by(AuditLog.id).offset(audit_rows - 1).limit(1)) \
            if audit_rows > 0 else 0
        return AuditLog.id > (last or 0)
    return AuditLog.at > at


def writes_since(bind, *, audit_rows: int | None = None, at: dt.datetime | None = None,
                 exclude_actors=(), limit: int = 200) -> dict:
    """The audit-log entries after a point: after its first `audit_rows` entries, or after the time
    `at` (give one). {"count": all of them, "entries": the first `limit`, oldest first, each
    {"id", "at", "actor", "action", "entity", "entity_id"}}; entries by `exclude_actors` left out."""
    if (audit_rows is None) == (at is None):
        raise ValueError("writes_since takes one of audit_rows or at")
    with session_on(bind) as s:
        where = [_audit_position(s, audit_rows, at)]
        if exclude_actors:
            where.append(AuditLog.actor.not_in(list(exclude_actors)))
        total = int(s.scalar(select(func.count()).select_from(AuditLog).where(*where)))
        rows = s.execute(select(AuditLog.id, AuditLog.at, AuditLog.actor, AuditLog.action, AuditLog.entity,
                                AuditLog.entity_id).where(*where).order_by(AuditLog.id).limit(limit)).all()
    return {"count": total, "entries": [
        {"id": r.id, "at": str(r.at), "actor": r.actor, "action": r.action, "entity": r.entity,
         "entity_id": r.entity_id} for r in rows]}


def numbering_state(bind) -> dict[str, int]:
    """The last number issued in each document series (SO, PO, INV, BILL, PAY, JE, ST, LOT) that has
    issued one; numbering is gapless, so the next document of a series gets last + 1."""
    with session_on(bind) as s:
        return {r.name: int(r.last) for r in s.execute(select(DocSequence.name, DocSequence.last))}


def document_ids(s) -> dict[str, list[int]]:
    """The ids of every sales order and invoice, ascending, by the API's collection name."""
    return {"sales-orders": sorted(s.scalars(select(SalesOrder.id)).all()),
            "invoices": sorted(s.scalars(select(Invoice.id)).all())}


def sales_order_facts(s, ids) -> dict[int, dict]:
    """What the API shows of these sales orders: number, state, totals and (id, net, tax) per line."""
    return {o.id: {"number": o.number, "state": o.state, "net_total": o.net_total, "tax_total": o.tax_total,
                   "gross_total": o.gross_total, "lines": [(l.id, l.net_amount, l.tax_amount) for l in o.lines]}
            for o in s.scalars(select(SalesOrder).where(SalesOrder.id.in_(list(ids))))}


def invoice_facts(s, ids) -> dict[int, dict]:
    """What the API shows of these invoices: number, kind, state, gross total and amount paid."""
    return {i.id: {"number": i.number, "kind": i.kind, "state": i.state, "gross_total": i.gross_total,
                   "amount_paid": i.amount_paid}
            for i in s.scalars(select(Invoice).where(Invoice.id.in_(list(ids))))}


def journal_totals(s) -> tuple[Decimal, Decimal]:
    """(debit, credit) over every journal line, summed exactly."""
    debit, credit = s.execute(select(func.sum(cents(JournalLine.debit)), func.sum(cents(JournalLine.credit)))).one()
    return Decimal(debit or 0) / 100, Decimal(credit or 0) / 100
