"""What the books hold, read for operators: writes since a point of the audit log, the document
numbering, and the documents a restored copy is compared with."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import func, inspect, or_, select, true

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


def _absent_from(s, copy):
    """The condition for entries the copy's audit log lacks. Above the copy's last id, all; at or
    below it, the ones the copy does not hold (found id by id only when the count and the sum of the
    ids there differ: a copy of this database holds them all)."""
    with session_on(copy) as c:
        if not _has_audit_log(c):
            return true()
        top, held, total = c.execute(select(func.max(AuditLog.id), func.count(), func.sum(AuditLog.id))).one()
        top = top or 0
        below = AuditLog.id <= top
        if tuple(s.execute(select(func.count(), func.sum(AuditLog.id)).where(below)).one()) == (held, total):
            return AuditLog.id > top
        kept = set(c.scalars(select(AuditLog.id)))
    missing = [i for i in s.scalars(select(AuditLog.id).where(below)) if i not in kept]
    return or_(AuditLog.id > top, AuditLog.id.in_(missing))


def _has_audit_log(s) -> bool:
    return inspect(s.connection()).has_table(AuditLog.__tablename__)


def _number(r) -> str | None:
    for snapshot in (r.after, r.before):
        if isinstance(snapshot, dict) and snapshot.get("number"):
            return str(snapshot["number"])
    return None


def writes_since(bind, *, audit_rows: int | None = None, at: dt.datetime | None = None, not_in=None,
                 exclude_actors=(), exclude_entities=(), exclude_actions=(), limit: int | None = 200) -> dict:
    """The audit-log entries after a point: after its first `audit_rows` entries, after the time `at`,
    or those a copy of this database (`not_in`, a bind on it) lacks (give one). {"count": all of them,
    "entries": the first `limit` (None: all), oldest first, each {"id", "at", "actor", "action",
    "entity", "entity_id", "number" (the document number, or None)}, "groups": [{"entity", "action",
    "count", "first_at", "last_at"}] over all of them, "first_at", "last_at"}; entries by
    `exclude_actors`, on `exclude_entities` (tables) or of `exclude_actions` (e.g. "login") left out. A database without an audit log has none."""
    if sum(x is not None for x in (audit_rows, at, not_in)) != 1:
        raise ValueError("writes_since takes one of audit_rows, at or not_in")
    with session_on(bind) as s:
        if not _has_audit_log(s):
            return {"count": 0, "entries": [], "groups": [], "first_at": None, "last_at": None}
        where = [_absent_from(s, not_in) if not_in is not None else _audit_position(s, audit_rows, at)]
        if exclude_actors:
            where.append(AuditLog.actor.not_in(list(exclude_actors)))
        if exclude_entities:
            where.append(AuditLog.entity.not_in(list(exclude_entities)))
        if exclude_actions:
            where.append(AuditLog.action.not_in(list(exclude_actions)))
        groups = s.execute(select(AuditLog.entity, AuditLog.action, func.count(), func.min(AuditLog.at),
                                  func.max(AuditLog.at)).where(*where).group_by(AuditLog.entity, AuditLog.action)
                           .order_by(AuditLog.entity, AuditLog.action)).all()
        rows = s.execute(select(AuditLog.id, AuditLog.at, AuditLog.actor, AuditLog.action, AuditLog.entity,
                                AuditLog.entity_id, AuditLog.after, AuditLog.before)
                         .where(*where).order_by(AuditLog.id).limit(limit)).all()
    firsts, lasts = [g[3] for g in groups], [g[4] for g in groups]
    return {"count": sum(int(g[2]) for g in groups), "entries": [
        {"id": r.id, "at": str(r.at), "actor": r.actor, "action": r.action, "entity": r.entity,
         "entity_id": r.entity_id, "number": _number(r)} for r in rows],
        "groups": [{"entity": g[0], "action": g[1], "count": int(g[2]), "first_at": str(g[3]), "last_at": str(g[4])}
                   for g in groups],
        "first_at": str(min(firsts)) if firsts else None, "last_at": str(max(lasts)) if lasts else None}


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
