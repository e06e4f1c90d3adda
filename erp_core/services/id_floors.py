"""Id floors on SQLite: ids a database handed out once are not handed out again after a restore.

SQLite gives a new row max(id) + 1 (no AUTOINCREMENT), so a database restored from a backup would
hand out again the ids of the rows made after the backup. A restore records, per table, the last id
the replaced database had handed out (system setting ID_FLOORS_KEY, erp_core.ops.raise_numbering);
while a table's largest id is below its floor, new rows get ids above the floor. PostgreSQL needs
none of this: its sequences are raised instead.
"""

from __future__ import annotations

import json

from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from ..models import Base, SystemSetting

ID_FLOORS_KEY = "id_floors"
_CACHE = "_id_floors"


def saved_floors(s: Session) -> dict[str, int]:
    """{table: floor} as recorded by the last restore (empty when none was)."""
    value = s.connection().execute(select(SystemSetting.value).where(SystemSetting.key == ID_FLOORS_KEY)).scalar()
    return _parse(value)


def _parse(value: str | None) -> dict[str, int]:
    return {k: int(v) for k, v in json.loads(value).items()} if value else {}


def _floors(session: Session) -> dict[str, int]:
    """Read once per transaction (the setting changes only by a restore, with the ERP read-only); on
    SQLite only, through the driver (the cheapest read: every write transaction makes it)."""
    if _CACHE not in session.info:
        session.info[_CACHE] = _parse(session.connection().exec_driver_sql(
            "SELECT value FROM system_settings WHERE key = ?", (ID_FLOORS_KEY,)).scalar())
    return session.info[_CACHE]


def ids_above_floor(session: Session, table, count: int) -> list[int] | None:
    """`count` ids for new rows of `table` above its floor, or None when SQLite's own choice is above it."""
    if count == 0 or session.get_bind().dialect.name != "sqlite":
        return None
    floor = _floors(session).get(table.name)
    if floor is None:
        return None
    top = session.connection().execute(select(func.max(table.c.id))).scalar() or 0
    if top >= floor:
        return None
    return list(range(floor + 1, floor + 1 + count))


@event.listens_for(Session, "before_flush")
def _assign(session, _ctx, _instances):
    by_table: dict = {}
    for obj in session.new:
        if isinstance(obj, Base) and "id" in obj.__table__.c and getattr(obj, "id", 0) is None:
            by_table.setdefault(obj.__table__, []).append(obj)
    for table, objs in by_table.items():
        ids = ids_above_floor(session, table, len(objs))
        for obj, ident in zip(objs, ids or ()):
            obj.id = ident


@event.listens_for(Session, "after_transaction_end")
def _forget(session, _transaction):
    session.info.pop(_CACHE, None)
