"""The database catalogue: what a schema is made of, in a form two databases can be compared by.

Tables with their columns (type, nullability, default), indexes, foreign keys, check and unique
constraints, triggers (and, on PostgreSQL, functions). Upgrades record it before they start, so a
rollback can prove it returned to the exact schema, and compare it with a freshly migrated database
to prove an upgrade ended at the exact schema of the new release.
"""

from __future__ import annotations

import re

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

# Objects an interrupted operation may leave behind: Alembic's SQLite batch tables, our own scratch names.
LEFTOVER_PATTERNS = (r"^_alembic_tmp_", r"^erpctl_tmp_", r"^_erpctl_")


def _norm_sql(sql: str | None) -> str:
    return re.sub(r"\s+", " ", sql or "").strip()


def _norm_expr(sql: str | None) -> str:
    """A PostgreSQL expression without casts, parentheses and spaces: the server renders the same CHECK
    differently once it went through pg_dump and back (ARRAY[...]::text[] vs ARRAY[x::text, ...])."""
    sql = re.sub(r"::[a-z_ ]+(\[\])?", "", sql or "")
    return re.sub(r"[\s()]+", "", sql)


def catalogue(engine: Engine) -> dict:
    with engine.connect() as c:
        return _sqlite(c) if engine.dialect.name == "sqlite" else _postgres(c)


def _sqlite(c: Connection) -> dict:
    out: dict = {"tables": {}, "triggers": {}, "views": {}}
    rows = c.execute(text("SELECT type, name, tbl_name, sql FROM sqlite_master "
                          "WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name")).all()
    for kind, name, table, sql in rows:
        if kind == "table":
            cols = [{"name": r[1], "type": (r[2] or "").upper(), "notnull": bool(r[3]), "default": r[4],
                     "pk": r[5]} for r in c.execute(text(f'PRAGMA table_info("{name}")'))]
            indexes = {}
            for r in c.execute(text(f'PRAGMA index_list("{name}")')):
                idx_cols = [x[2] for x in c.execute(text(f'PRAGMA index_info("{r[1]}")'))]
                indexes[r[1]] = {"unique": bool(r[2]), "origin": r[3], "columns": idx_cols,
                                 "partial": bool(r[4])}
            fks = sorted((r[2], r[3], r[4], r[5], r[6]) for r in c.execute(text(f'PRAGMA foreign_key_list("{name}")')))
            out["tables"][name] = {"columns": cols, "indexes": indexes, "foreign_keys": [list(f) for f in fks],
                                   "checks": sorted(_sqlite_checks(sql))}
        elif kind == "trigger":
            out["triggers"][name] = {"table": table, "sql": _norm_sql(sql)}
        elif kind == "view":
            out["views"][name] = _norm_sql(sql)
        elif kind == "index" and sql:
            out["tables"].setdefault(table, {}).setdefault("index_sql", {})[name] = _norm_sql(sql)
    return out


def _sqlite_checks(sql: str | None) -> list[str]:
    """The named CHECK constraints of a CREATE TABLE statement (SQLite has no catalogue for them)."""
    return re.findall(r"CONSTRAINT\s+(\w+)\s+CHECK", sql or "", flags=re.I)


def _postgres(c: Connection) -> dict:
    schema = "public"
    out: dict = {"tables": {}, "triggers": {}, "functions": {}, "views": {}, "sequences": []}
    for (name,) in c.execute(text("SELECT table_name FROM information_schema.tables WHERE table_schema = :s "
                                  "AND table_type = 'BASE TABLE' ORDER BY 1"), {"s": schema}):
        cols = [dict(r._mapping) for r in c.execute(text(
            "SELECT column_name AS name, data_type AS type, character_maximum_length AS length, "
            "numeric_precision AS precision, numeric_scale AS scale, is_nullable = 'NO' AS notnull, "
            "column_default AS default FROM information_schema.columns WHERE table_schema = :s "
            "AND table_name = :t ORDER BY ordinal_position"), {"s": schema, "t": name})]
        indexes = {r[0]: _norm_sql(r[1]) for r in c.execute(text(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = :s AND tablename = :t"),
            {"s": schema, "t": name})}
        constraints = {r[0]: {"type": r[1], "def": _norm_expr(r[2]), "validated": r[3]} for r in c.execute(text(
            "SELECT conname, contype, pg_get_constraintdef(oid), convalidated FROM pg_constraint "
            "WHERE conrelid = to_regclass(:q) ORDER BY conname"), {"q": f'{schema}."{name}"'})}
        out["tables"][name] = {"columns": cols, "indexes": indexes, "constraints": constraints}
    for r in c.execute(text(
            "SELECT t.tgname, c.relname, pg_get_triggerdef(t.oid) FROM pg_trigger t "
            "JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE NOT t.tgisinternal AND n.nspname = :s ORDER BY 1"), {"s": schema}):
        out["triggers"][r[0]] = {"table": r[1], "sql": _norm_sql(r[2])}
    for r in c.execute(text(
            "SELECT p.proname, pg_get_functiondef(p.oid) FROM pg_proc p JOIN pg_namespace n "
            "ON n.oid = p.pronamespace WHERE n.nspname = :s AND p.prokind = 'f' ORDER BY 1"), {"s": schema}):
        out["functions"][r[0]] = _norm_sql(r[1])
    for r in c.execute(text("SELECT table_name, view_definition FROM information_schema.views "
                            "WHERE table_schema = :s"), {"s": schema}):
        out["views"][r[0]] = _norm_sql(r[1])
    out["sequences"] = sorted(r[0] for r in c.execute(text(
        "SELECT sequence_name FROM information_schema.sequences WHERE sequence_schema = :s"), {"s": schema}))
    return out


def diff(expected: dict, actual: dict, limit: int = 40) -> list[str]:
    """What differs between two catalogues, one line each (empty when they are the same)."""
    out: list[str] = []

    def walk(path: str, a, b):
        if len(out) >= limit or a == b:
            return
        if isinstance(a, dict) and isinstance(b, dict):
            for k in sorted(set(a) | set(b), key=str):
                if k not in b:
                    out.append(f"{path}{k}: missing")
                elif k not in a:
                    out.append(f"{path}{k}: unexpected")
                else:
                    walk(f"{path}{k}.", a[k], b[k])
        else:
            out.append(f"{path.rstrip('.')}: expected {a!r}, found {b!r}")

    walk("", expected, actual)
    return out


def leftovers(cat: dict) -> list[str]:
    """Temporary objects an interrupted operation left behind (a leftover table's own indexes aside)."""
    def temporary(name: str) -> bool:
        return any(re.search(p, name) for p in LEFTOVER_PATTERNS)

    names = [n for n in (*cat.get("tables", {}), *cat.get("triggers", {}), *cat.get("functions", {})) if temporary(n)]
    for table, t in cat.get("tables", {}).items():
        if not temporary(table):
            names += [i for i in t.get("indexes", {}) if temporary(i)]
    return sorted(names)
