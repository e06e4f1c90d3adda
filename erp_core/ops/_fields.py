"""Encrypted fields for an operator holding the field key: re-encrypt release 1.0's values bound to their row
(rewrap_fields), and reveal the encrypted values of an audit log entry (reveal_audit_entry, itself audited)."""

from __future__ import annotations

from sqlalchemy import text

from .. import crypto
from ..errors import AuditEntryNotFound, NothingToReveal, RewrapRefused
from ..models.sealing import open_audit_value, read_context
from ._bind import session_on

__all__ = ["ENCRYPTED_FIELDS", "rewrap_fields", "reveal_audit_entry", "open_stored"]



def _encrypted_fields() -> dict[str, tuple[str, tuple[str, ...]]]:
    """Every column the models store encrypted, by table: (the primary key it is bound to, its columns)."""
    from .. import models  # noqa: F401 - every model registered
    from ..models.base import Base, Encrypted

    found = {}
    for table in Base.metadata.sorted_tables:
        columns = tuple(c.name for c in table.columns if isinstance(c.type, Encrypted))
        if columns:
            (key,) = table.primary_key.columns
            found[table.name] = (key.name, columns)
    return found


# every column stored encrypted, bound to its row's primary key (models: Encrypted)
ENCRYPTED_FIELDS = _encrypted_fields()


def open_stored(stored: str | None, table: str, column: str, row_id, kdf: dict | None) -> str | None:
    return crypto.unseal(stored, table, column, row_id, kdf)


def _tables(s) -> dict:
    from sqlalchemy import inspect

    present = set(inspect(s.connection()).get_table_names())
    return {t: kc for t, kc in ENCRYPTED_FIELDS.items() if t in present}


def rewrap_fields(url: str, key: str | bytes, batch: int = 200, actor: str = "erpctl") -> dict:
    """Re-encrypt every release-1.0 (v1) value bound to its row (v2), in batches of `batch` rows, each its own
    transaction; a value changed meanwhile is left for the next pass (a pass repeats until none is left).
    Refused (RewrapRefused, exit 121) while release 1.0 may still run on the schema (before the contract step 0004): 1.0
    cannot read a v2 value. Returns {"rewrapped": {table.column: n}, "passes"}."""
    from ..db import Database

    db = Database(url)
    done: dict = {}
    passes = 0
    try:
        with crypto.key_loaded(key):
            with db.session(write=False) as s:
                ctx = read_context(s.connection())
                tables = _tables(s)
            if not ctx["bound"]:
                raise RewrapRefused("release 1.0 may still run on this database (the upgrade's contract step has not "
                               "run): it cannot read re-encrypted values",
                               fix="Finish the upgrade ('erpctl upgrade resume --confirm-contract'), then run "
                                   "'erpctl field-key rewrap' again.")
            while True:
                passes += 1
                found = sum(_rewrap_table(db, t, key, cs, ctx["kdf"], batch, done)
                            for t, (key, cs) in tables.items())
                if not found or passes >= 5:
                    break
            if done:
                from ..services import audit

                with db.session(actor=actor) as s:
                    audit.record(s, "update", "field_key", "rewrap", after={"rewrapped": done, "passes": passes})
    finally:
        db.dispose()
    return {"rewrapped": done, "passes": passes}


def _rewrap_table(db, table: str, key: str, columns: tuple, kdf, batch: int, done: dict) -> int:
    found, last = 0, 0
    old = " OR ".join(f"{c} LIKE 'v1:%'" for c in columns)
    while True:
        with db.session() as s:
            rows = s.execute(text(f"SELECT {key}, {', '.join(columns)} FROM {table} WHERE {key} > :last AND ({old}) "  # noqa: S608
                                  f"ORDER BY {key} LIMIT :n"), {"last": last, "n": batch}).all()
            for row in rows:
                for column, stored in zip(columns, row[1:]):
                    if stored is None or not stored.startswith("v1:"):
                        continue
                    sealed = crypto.seal(crypto.decrypt(stored), table, column, row[0], kdf)
                    s.execute(text(f"UPDATE {table} SET {column} = :new WHERE {key} = :id AND {column} = :old"),  # noqa: S608
                              {"new": sealed, "id": row[0], "old": stored})
                    done[f"{table}.{column}"] = done.get(f"{table}.{column}", 0) + 1
                    found += 1
        if len(rows) < batch:
            return found
        last = rows[-1][0]


def reveal_audit_entry(url: str, key: str | bytes, entry_id: int, actor: str = "erpctl") -> dict:
    """The encrypted values of audit log entry `entry_id` in clear ({"entry", "values": {column: {"before",
    "after"}}}), decrypted with `key`; the reveal is itself an audit log entry (action "create", entity
    "audit_reveal", entity id the entry revealed; who, and which columns, never a value).
    AuditEntryNotFound (exit 122) when there is no such entry, NothingToReveal (123) when it holds no
    encrypted value; FieldTampered (120) when a value does not decrypt there."""
    from ..db import Database
    from ..models import AuditLog
    from ..services import audit

    db = Database(url)
    try:
        with crypto.key_loaded(key), db.session(actor=actor) as s:
            entry = s.get(AuditLog, entry_id)
            if entry is None:
                raise AuditEntryNotFound(f"audit log entry {entry_id} does not exist",
                                         fix="Give the id of an entry (the API's /audit-log lists them).")
            kdf = read_context(s.connection())["kdf"]
            values = _opened(entry, kdf)
            if not values:
                raise NothingToReveal(f"audit log entry {entry_id} holds no encrypted value",
                               fix="Pick an entry of a partner or bank-detail change that changed an encrypted field.")
            audit.record(s, "create", "audit_reveal", str(entry_id), after={"columns": sorted(values)})
            return {"entry": {"id": entry.id, "at": entry.at.isoformat(), "actor": entry.actor,
                              "action": entry.action, "entity": entry.entity, "entity_id": entry.entity_id},
                    "values": values}
    finally:
        db.dispose()


def _opened(entry, kdf) -> dict:
    out: dict = {}
    for side, data in (("before", entry.before or {}), ("after", entry.after or {})):
        for column, stored in data.items():
            if isinstance(stored, str) and stored.startswith(crypto.BOUND):
                out.setdefault(column, {"before": None, "after": None})[side] = open_audit_value(
                    stored, entry.entity, column, entry.entity_id, side, kdf)
    return out
