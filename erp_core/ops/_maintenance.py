"""The maintenance (read-only) switch: while on, the ERP serves reads and refuses writes with 503."""

from __future__ import annotations

from ..db import Database
from ..services import maintenance as _service

__all__ = ["maintenance_state", "set_maintenance", "switch_maintenance"]


def maintenance_state(s) -> dict:
    """{"enabled": bool, "reason": str} in the session's transaction."""
    return _service.state(s)


def set_maintenance(s, enabled: bool, reason: str = "", *, retry_after: int | None = None,
                    until: float | None = None) -> dict:
    """Switch it in the session's transaction (effective when it commits); the new state. Refused
    writes say Retry-After: the seconds left until `until` (unix seconds, at least 1), else
    `retry_after`, else 60."""
    return _service.set_state(s, enabled, reason, retry_after=retry_after, until=until)


def switch_maintenance(database_url: str, enabled: bool | None = None, reason: str = "", *,
                       actor: str = "operator", retry_after: int | None = None, until: float | None = None) -> dict:
    """On or off (None: only read it) in a transaction of its own on `database_url`, written in the
    audit log as `actor`; the state afterwards."""
    db = Database(database_url, pool_size=1, max_overflow=1)
    try:
        with db.session(write=enabled is not None, actor=actor) as s:
            if enabled is None:
                return maintenance_state(s)
            return set_maintenance(s, enabled, reason, retry_after=retry_after, until=until)
    finally:
        db.dispose()
