"""The audit log: every insert, update and delete, written in the same transaction.

A flush hook records each change with who, when, what, before and after. Password hashes are never
written to the log (only that they changed); encrypted fields (partners' bank accounts...) are written
encrypted, bound to the audited row, column and side (models.sealing.seal_for_audit), so the log shows
nothing readable and an auditor with the field key recovers both values (erp_core.ops.reveal_audit_entry).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import event, inspect
from sqlalchemy.orm import Session

from ..models import AuditLog, Base
from ..models.base import Encrypted, utcnow
from ..models.sealing import seal_for_audit
from .id_floors import ids_above_floor

SKIP = {"audit_log", "api_tokens", "login_attempts", "login_throttle", "idempotency_keys", "stock_levels",
        "doc_sequences", "erp_schema_migrations",
        "user_mfa", "mfa_recovery_codes", "mfa_challenges"}  # MFA: explicit entries (services/mfa.py)
REDACT = {"password_hash"}


def _json(value):
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    return value


def _logged(session, obj, column, value, side: str, ident: str | None = None):
    """What the log keeps of a column's value: the value, "***" for a password hash, sealed when encrypted."""
    if isinstance(column.type, Encrypted):
        return seal_for_audit(session, value, obj.__tablename__, column.key, ident or _ident(obj), side)
    if column.key in REDACT and value is not None:
        return "***"
    return _json(value)


def _snapshot(session, obj, which: str) -> dict:
    state = inspect(obj)
    out = {}
    for attr in state.mapper.column_attrs:
        col = attr.columns[0]
        hist = state.attrs[attr.key].history
        if which == "before":
            value = hist.deleted[0] if hist.deleted else (hist.unchanged[0] if hist.unchanged else None)
        else:
            value = getattr(obj, attr.key)
        out[attr.key] = _logged(session, obj, col, value, which)
    return out


def _changed(session, obj) -> tuple[dict, dict]:
    state = inspect(obj)
    before, after = {}, {}
    for attr in state.mapper.column_attrs:
        hist = state.attrs[attr.key].history
        if not hist.has_changes():
            continue
        col = attr.columns[0]
        old = hist.deleted[0] if hist.deleted else None
        new = hist.added[0] if hist.added else None
        if col.key in REDACT:
            before[attr.key], after[attr.key] = "***", "*** (changed)"
            continue
        before[attr.key] = _logged(session, obj, col, old, "before")
        after[attr.key] = _logged(session, obj, col, new, "after")
    return before, after


def _ident(obj) -> str:
    """The primary key (read from the row itself: a new object has no identity key yet after its flush)."""
    state = inspect(obj)
    key = state.identity or state.mapper.primary_key_from_instance(obj)
    return ",".join(str(v) for v in key if v is not None)


def record(s: Session, action: str, entity: str, entity_id: str, before=None, after=None) -> None:
    """An explicit entry (logins, logouts, failed logins)."""
    s.add(AuditLog(actor=s.info.get("actor", "system"), action=action, entity=entity,
                   entity_id=str(entity_id), before=before, after=after, at=utcnow()))


@event.listens_for(Session, "before_flush")
def _collect(session, _ctx, _instances):
    """Capture updates and deletes before the flush (history is lost afterwards)."""
    pending = session.info.setdefault("_audit_pending", [])
    for obj in session.dirty:
        if isinstance(obj, Base) and obj.__tablename__ not in SKIP and session.is_modified(obj):
            before, after = _changed(session, obj)
            if before or after:
                pending.append(("update", obj, before, after))
    for obj in session.deleted:
        if isinstance(obj, Base) and obj.__tablename__ not in SKIP:
            pending.append(("delete", obj, _snapshot(session, obj, "before"), None))
    session.info["_audit_new"] = [o for o in session.new
                                  if isinstance(o, Base) and o.__tablename__ not in SKIP]


@event.listens_for(Session, "after_flush")
def _write(session, _ctx):
    rows = []
    actor = session.info.get("actor", "system")
    now = utcnow()
    for obj in session.info.pop("_audit_new", []):
        rows.append(dict(at=now, actor=actor, action="create", entity=obj.__tablename__,
                         entity_id=_ident(obj), before=None, after=_snapshot(session, obj, "after")))
    for action, obj, before, after in session.info.pop("_audit_pending", []):
        rows.append(dict(at=now, actor=actor, action=action, entity=obj.__tablename__,
                         entity_id=_ident(obj), before=before, after=after))
    if rows:
        for row, ident in zip(rows, ids_above_floor(session, AuditLog.__table__, len(rows)) or ()):
            row["id"] = ident  # after a restore on SQLite: above the ids the replaced database handed out
        session.connection().execute(AuditLog.__table__.insert(), rows)
