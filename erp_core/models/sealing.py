"""Encrypted columns bound to their row: the ORM side of erp_core.crypto's v2 format.

A model's Encrypted attributes hold the plain value; the database holds it sealed with the associated data
table, column and row id, so a value copied to another row or column fails to decrypt (crypto.FieldTampered,
naming the table, column and row) instead of showing another row's value.

- Writing: a new row's id is taken before its INSERT (SQLite: above the largest id and the restore floor,
  under the write lock every SQLite write holds; PostgreSQL: the id column's sequence), so it is sealed for
  its row from the first write. Which format is written is decided per transaction (field_context): v2 once
  release 1.1's contract step (0004) is applied -- before it, release 1.0 may still run on the database
  (or come back by a rollback) and it cannot read v2, so v1 is written as 1.0 does.
- Reading: the column type hands the stored text over unopened; the row's load or refresh event opens it
  with the row's id. Only the ORM writes and reads encrypted columns: a Core statement writing a plain
  value is refused (TypeError), one reading gets the stored text.
"""

from __future__ import annotations

import json

from sqlalchemy import event, inspect, text
from sqlalchemy.orm import Session, attributes, object_session

from .. import crypto
from ..services.id_floors import ids_above_floor  # its own ids-before-flush hook, registered first
from ..stored import known_migrations

KDF_KEY = "field_key_kdf"  # system setting: the passphrase KDF's salt and parameters (migration 0010)
CONTRACT_OF_1_0 = "0004"   # from this revision on, release 1.0 refuses the schema
_CTX = "_field_context"


class Sealed(str):
    """A plain value with the text stored for it (what Encrypted.process_bind_param writes)."""

    stored: str

    def __new__(cls, plain: str, stored: str):
        obj = super().__new__(cls, plain)
        obj.stored = stored
        return obj


class Unopened:
    """A stored value not yet opened with its row (between the column's result processing and the row's load
    event); never shown: it has no text of its own."""

    __slots__ = ("stored",)

    def __init__(self, stored: str):
        self.stored = stored

    def __str__(self):
        raise TypeError("an encrypted value read outside its row: load the row through the ORM")


def encrypted_columns(cls) -> tuple[str, ...]:
    cached = cls.__dict__.get("_encrypted_columns")
    if cached is None:
        from .base import Encrypted

        cached = tuple(a.key for a in inspect(cls).column_attrs if isinstance(a.columns[0].type, Encrypted))
        setattr(cls, "_encrypted_columns", cached)
    return cached


def bound_writes_allowed(revision: str | None) -> bool:
    """Whether v2 may be written at this schema revision: release 1.0 can no longer run on it."""
    order = [m["revision"] for m in known_migrations()]
    if revision is None or revision not in order:
        return True  # not migrated by Alembic (a bare schema), or a later release's revision
    return order.index(revision) >= order.index(CONTRACT_OF_1_0)


def read_context(conn) -> dict:
    """{"bound": bool, "kdf": dict | None} of the database on this connection."""
    revision = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() \
        if _has_table(conn, "alembic_version") else None
    value = conn.execute(text("SELECT value FROM system_settings WHERE key = :k"), {"k": KDF_KEY}).scalar()
    return {"bound": bound_writes_allowed(revision), "kdf": json.loads(value) if value else None}


def _has_table(conn, name: str) -> bool:
    return inspect(conn).has_table(name)


def field_context(session: Session) -> dict:
    """read_context, once per transaction."""
    if _CTX not in session.info:
        session.info[_CTX] = read_context(session.connection())
    return session.info[_CTX]


def seal_for_audit(session: Session, plain, table: str, column: str, row_id, side: str):
    """An audit log value: v2 bound to the audited row, column and side (before/after); "***" when the
    database cannot hold one yet (no KDF parameters for a passphrase key)."""
    if plain is None:
        return None
    kdf = field_context(session)["kdf"]
    if crypto.is_passphrase() and not kdf:
        return "***"
    return crypto.seal(str(plain), "audit_log", f"{table}.{column}.{side}", row_id, kdf)


def open_audit_value(stored, table: str, column: str, row_id, side: str, kdf: dict | None):
    return crypto.unseal(stored, "audit_log", f"{table}.{column}.{side}", row_id, kdf)


# ---- ids before the INSERT ---------------------------------------------------------------------------

def _take_ids(session: Session, table, count: int) -> list[int]:
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        return list(conn.execute(text("SELECT nextval(pg_get_serial_sequence(:t, 'id')) "
                                      "FROM generate_series(1, :n)"), {"t": table.name, "n": count}).scalars())
    floor = ids_above_floor(session, table, count)
    if floor:
        return floor
    top = conn.execute(text(f"SELECT coalesce(max(id), 0) FROM {table.name}")).scalar()  # noqa: S608
    return list(range(top + 1, top + 1 + count))


@event.listens_for(Session, "before_flush")
def _ids_and_context(session, _ctx, _instances):
    by_table: dict = {}
    for obj in session.new:
        if encrypted_columns(type(obj)) and getattr(obj, "id", 0) is None:
            by_table.setdefault(obj.__table__, []).append(obj)
    for table, objs in by_table.items():
        for obj, ident in zip(objs, _take_ids(session, table, len(objs))):
            obj.id = ident
    if any(encrypted_columns(type(o)) for o in (*session.new, *session.dirty)):
        field_context(session)


@event.listens_for(Session, "after_transaction_end")
def _forget(session, _transaction):
    session.info.pop(_CTX, None)


# ---- sealing on write, opening on load ---------------------------------------------------------------

def _row_id(state):
    """The row a value is bound to: its primary key (`id`, or `user_id` for a user's MFA secret)."""
    (column,) = state.mapper.primary_key
    return state.dict.get(state.mapper.get_property_by_column(column).key)


def _seal(target, changed_only: bool) -> None:
    session = object_session(target)
    ctx = field_context(session)
    state = inspect(target)
    for key in encrypted_columns(type(target)):
        value = state.dict.get(key)
        if value is None or isinstance(value, Sealed):
            continue
        if changed_only and not state.attrs[key].history.has_changes():
            continue
        stored = (crypto.seal(value, target.__tablename__, key, _row_id(state), ctx["kdf"]) if ctx["bound"]
                  else crypto.encrypt(value))
        setattr(target, key, Sealed(value, stored))


def _before_insert(_mapper, _connection, target):
    if encrypted_columns(type(target)):
        _seal(target, changed_only=False)


def _before_update(_mapper, _connection, target):
    if encrypted_columns(type(target)):
        _seal(target, changed_only=True)


def _open(target, session, keys=None) -> None:
    state = inspect(target)
    kdf = None
    for key in encrypted_columns(type(target)):
        value = state.dict.get(key)
        if not isinstance(value, Unopened) or (keys is not None and key not in keys):
            continue
        if kdf is None and value.stored.startswith(crypto.BOUND) and crypto.is_passphrase():
            kdf = field_context(session)["kdf"]
        plain = crypto.unseal(value.stored, target.__tablename__, key, _row_id(state), kdf)
        attributes.set_committed_value(target, key, plain)


def _on_load(target, context):
    if encrypted_columns(type(target)):
        _open(target, context.session)


def _on_refresh(target, context, attrs):
    if encrypted_columns(type(target)):  # an UPDATE ... WHERE that syncs the objects it matched has no context
        _open(target, context.session if context is not None else object_session(target))


def install(base) -> None:
    event.listen(base, "before_insert", _before_insert, propagate=True)
    event.listen(base, "before_update", _before_update, propagate=True)
    event.listen(base, "load", _on_load, propagate=True)
    event.listen(base, "refresh", _on_refresh, propagate=True)
