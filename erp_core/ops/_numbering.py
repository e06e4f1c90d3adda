"""Numbering floors: what a database has handed out (document numbers per series, ids per table), and
raising another database (a restored copy) to at least that, so nothing handed out is handed out again.

    numbering_floors(bind) -> {"engine", "series": {series: last number}, "ids": {name: last id},
                               "unreadable": [what could not be read, and why]}
        "ids": SQLite, per table with one integer primary key, its largest id (and sqlite_sequence);
               PostgreSQL, per sequence ("schema.sequence"), its last value
        a damaged table (SQLite: a page the engine cannot read) is left out and named in "unreadable":
        a restore over a damaged database reads what it can
    raise_numbering(url, floors) -> {"series": {series: [was, now]}, "ids": {name: [was, now]}}
        only what was lower is raised; never lowers anything

SQLite hands out max(id) + 1 (the tables have no AUTOINCREMENT), so a floor above a table's largest
id is kept in the system setting ID_FLOORS_KEY and honoured by the ERP when it inserts
(erp_core.services.id_floors).
"""

from __future__ import annotations

import json

from sqlalchemy import Integer, inspect, select, text
from sqlalchemy.exc import DBAPIError

from ..db import Database
from ..models import Base, DocSequence, SystemSetting
from ..services.id_floors import ID_FLOORS_KEY, saved_floors
from ._bind import session_on

__all__ = ["numbering_floors", "raise_numbering"]

_USER_SCHEMAS = "schemaname NOT IN ('pg_catalog', 'information_schema')"


def _id_tables() -> list:
    """The tables whose primary key is one integer column named id."""
    return [t for t in Base.metadata.sorted_tables
            if [c.name for c in t.primary_key.columns] == ["id"] and isinstance(t.c.id.type, Integer)]


def _series(s) -> dict[str, int]:
    if not inspect(s.connection()).has_table(DocSequence.__tablename__):
        return {}
    return {r.name: int(r.last) for r in s.execute(select(DocSequence.name, DocSequence.last))}


def _unreadable(what: str, exc: DBAPIError) -> str:
    return f"{what}: {str(exc.orig).strip().splitlines()[0][:200]}"


def _sqlite_ids(s, unreadable: list[str] | None = None) -> dict[str, int]:
    """Each table's largest id; a table SQLite cannot read (a damaged page) is named in `unreadable`
    (a failed read leaves a SQLite transaction usable) and left out."""
    present = set(inspect(s.connection()).get_table_names())
    out = {}
    for t in _id_tables():
        if t.name in present:
            try:
                top = s.scalar(text(f'SELECT max(id) FROM "{t.name}"'))
            except DBAPIError as exc:
                if unreadable is None:
                    raise
                unreadable.append(_unreadable(f"table {t.name} (its last id)", exc))
                continue
            if top:
                out[t.name] = int(top)
    if "sqlite_sequence" in present:
        for name, seq in s.execute(text("SELECT name, seq FROM sqlite_sequence")):
            out[name] = max(out.get(name, 0), int(seq or 0))
    for name, floor in saved_floors(s).items():  # floors set by an earlier restore still ahead of the rows
        out[name] = max(out.get(name, 0), floor)
    return out


def _pg_ids(s) -> dict[str, int]:
    rows = s.execute(text(f"SELECT schemaname, sequencename, last_value FROM pg_sequences WHERE {_USER_SCHEMAS}"))
    return {f"{schema}.{name}": int(last or 0) for schema, name, last in rows}  # 0: never used


def numbering_floors(bind) -> dict:
    """What the database has handed out: the last number of each document series and the last id
    of each table (SQLite) or sequence (PostgreSQL). Read-only. What a damage stops it reading is left
    out and named in "unreadable"."""
    unreadable: list[str] = []
    with session_on(bind) as s:
        engine = s.get_bind().dialect.name
        ids = _pg_ids(s) if engine == "postgresql" else _sqlite_ids(s, unreadable)
        try:
            series = _series(s)
        except DBAPIError as exc:  # read last: on PostgreSQL a failed read ends the transaction
            unreadable.append(_unreadable(f"table {DocSequence.__tablename__} (document numbers)", exc))
            series = {}
        return {"engine": engine, "series": series, "ids": ids, "unreadable": unreadable}


def _raise_series(s, floors: dict) -> dict:
    have, raised = _series(s), {}
    for name, floor in sorted(floors.items()):
        was = have.get(name)
        if was is None:
            s.add(DocSequence(name=name, last=int(floor)))
        elif was < floor:
            s.execute(DocSequence.__table__.update().where(DocSequence.name == name).values(last=int(floor)))
        else:
            continue
        raised[name] = [was or 0, int(floor)]
    return raised


def _raise_pg_ids(s, floors: dict) -> dict:
    have, raised = _pg_ids(s), {}
    for name, floor in sorted(floors.items()):
        if name in have and have[name] < floor:
            schema, seq = name.split(".", 1)
            s.execute(text("SELECT setval(format('%I.%I', CAST(:a AS text), CAST(:b AS text))::regclass, :v, true)"),
                      {"a": schema, "b": seq, "v": int(floor)})
            raised[name] = [have.get(name, 0), int(floor)]
    return raised


def _raise_sqlite_ids(s, floors: dict) -> dict:
    """Floors above a table's largest id go into the ID_FLOORS_KEY setting (the ERP honours it on insert)."""
    have, kept, raised = _sqlite_ids(s), saved_floors(s), {}
    present = set(inspect(s.connection()).get_table_names())  # an older schema may lack newer tables
    for name, floor in sorted(floors.items()):
        if name in present and have.get(name, 0) < floor:
            kept[name] = int(floor)
            raised[name] = [have.get(name, 0), int(floor)]
    if raised:
        value = json.dumps(kept, sort_keys=True)
        table = SystemSetting.__table__
        if s.get(SystemSetting, ID_FLOORS_KEY) is None:  # Core writes: the floors are no business write
            s.execute(table.insert().values(key=ID_FLOORS_KEY, value=value))
        else:
            s.execute(table.update().where(table.c.key == ID_FLOORS_KEY).values(value=value))
    return raised


def raise_numbering(database_url: str, floors: dict) -> dict:
    """Raise every document series and id sequence of the database at `database_url` to at least
    `floors` (from numbering_floors of another database of the same engine), in one transaction;
    what was raised, {"series": {name: [was, now]}, "ids": {name: [was, now]}}. Never lowers."""
    db = Database(database_url, pool_size=1, max_overflow=1)
    try:
        with db.session(write=True, actor="numbering") as s:
            engine = s.get_bind().dialect.name
            if floors.get("engine") not in (None, engine):
                raise ValueError(f"numbering floors of a {floors['engine']} database cannot be applied to {engine}")
            series = _raise_series(s, floors.get("series") or {})
            ids = (_raise_pg_ids if engine == "postgresql" else _raise_sqlite_ids)(s, floors.get("ids") or {})
            s.flush()
        return {"series": series, "ids": ids}
    finally:
        db.dispose()
