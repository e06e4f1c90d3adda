"""The business invariants (erp_core.invariants) and the field encryption key they may need."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from .. import crypto, invariants
from ._bind import one_snapshot, session_on

__all__ = ["InvariantsResult", "check_invariants", "invariant_checks", "load_field_key", "field_key",
           "field_key_check"]

field_key = crypto.key_loaded  # `with field_key(key):` the key set for the block, the previous one after


def load_field_key(key: str | bytes) -> None:
    """Set the field key for the rest of the process (a process that serves the ERP or seeds it)."""
    crypto.configure(key)


def invariant_checks() -> list[str]:
    """The names of the checks check_invariants runs, in order."""
    return [c.__name__ for c in invariants.CHECKS]


@dataclass
class InvariantsResult:
    """What check_invariants found: `violations` ({"check", "detail", "ref"} each) is empty when the
    business data is consistent."""

    violations: list[dict] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.violations

    def as_dict(self) -> dict:
        return {"ok": self.ok, "checks": self.checks, "seconds": self.seconds, "violations": self.violations}


def check_invariants(bind) -> InvariantsResult:
    """Run every check on a Session, a Connection (in its transaction) or an Engine (then on one snapshot)."""
    t0 = time.perf_counter()
    with session_on(one_snapshot(bind)) as s:
        found = [v.as_dict() for v in invariants.check_all(s)]
    return InvariantsResult(found, invariant_checks(), round(time.perf_counter() - t0, 3))


def field_key_check(bind, key: str | bytes, sample: int = 50) -> dict:
    """Whether `key` decrypts the encrypted fields stored in the database: up to `sample` stored values
    (the newest rows first) of each column decrypted with it, each with its row (ops._fields), nothing
    changed. {"checked", "failed", "ok", "fields"}: ok is True when every value checked decrypted (and when
    there is none to check: checked 0)."""
    from sqlalchemy import text

    from ..models.sealing import read_context
    from ._fields import ENCRYPTED_FIELDS, _tables, open_stored

    checked = failed = 0
    with session_on(bind) as s, crypto.key_loaded(key):
        kdf = read_context(s.connection())["kdf"]
        for table, (key, columns) in _tables(s).items():
            for column in columns:
                rows = s.execute(text(f"SELECT {key}, {column} FROM {table} WHERE {column} IS NOT NULL "  # noqa: S608
                                      f"ORDER BY {key} DESC LIMIT :n"), {"n": sample}).all()
                for row_id, stored in rows:
                    checked += 1
                    try:
                        open_stored(stored, table, column, row_id, kdf)
                    except Exception:  # noqa: BLE001 - a wrong key fails authentication (FieldTampered)
                        failed += 1
    return {"checked": checked, "failed": failed, "ok": failed == 0,
            "fields": [f"{t}.{c}" for t, (_key, cs) in ENCRYPTED_FIELDS.items() for c in cs]}
