"""What the database stores means, readable without SQLAlchemy or the models: the migrations this
code ships and whether it supports a schema revision, and the maintenance switch's stored value.
erp_core.db and erp_core.services build on it; so do the quick reads of erp_core.ops._peek (a
command that reads one row need not load SQLAlchemy, ~250 ms of start-up)."""

from __future__ import annotations

import ast
import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
STAGES = ("expand", "backfill", "contract")
MAINTENANCE_KEY = "maintenance"  # its row of system_settings


def maintenance_from_value(value: str | None) -> dict:
    """{"enabled", "reason"} of the maintenance row's value (None: no row, the switch is off), with
    "retry_after" and "until" when the switch set them."""
    data = json.loads(value) if value else {}
    out = {"enabled": bool(data.get("enabled")), "reason": data.get("reason", "")}
    return {**out, **{k: data[k] for k in ("retry_after", "until") if data.get(k) is not None}}


def code_head() -> str | None:
    migrations = known_migrations()
    return migrations[-1]["revision"] if migrations else None


def known_migrations() -> list[dict]:
    """The migrations this code ships, oldest first, with their declared stage. Read from what each
    file declares, not run: running them (Alembic's ScriptDirectory) loads Alembic and every
    migration's imports, ~250 ms that each schema check (erpctl erp maintenance status...) would
    pay. tests/erp_core/test_ops.py keeps this equal to Alembic's reading."""
    return [dict(m) for m in _migration_chain()]


def _declared(path: Path) -> dict:
    """A migration file's revision, down revision, stage and first docstring paragraph (Alembic's doc)."""
    tree = ast.parse(path.read_text(), str(path))
    values = {target.id: node.value for node in tree.body if isinstance(node, ast.Assign)
              for target in node.targets if isinstance(target, ast.Name)}
    try:
        declared = {k: ast.literal_eval(values[k]) if k in values else None
                    for k in ("revision", "down_revision", "stage")}
    except ValueError:
        raise LookupError(f"{path}: revision, down_revision and stage must be literals") from None
    doc = (ast.get_docstring(tree, clean=False) or "").strip()
    return {**declared, "doc": re.split("\n\n", doc)[0]}


@functools.lru_cache(maxsize=1)
def _migration_chain() -> tuple[dict, ...]:
    declared = [_declared(p) for p in sorted((MIGRATIONS_DIR / "versions").glob("*.py")) if p.name != "__init__.py"]
    children: dict = {}
    for m in declared:
        children.setdefault(m["down_revision"], []).append(m)
    chain, parent = [], None
    while nexts := children.get(parent):
        if len(nexts) > 1:
            raise LookupError(f"the migrations branch after {parent}: {', '.join(m['revision'] for m in nexts)}")
        chain.append(nexts[0])
        parent = nexts[0]["revision"]
    if len(chain) != len(declared):
        raise LookupError("a migration is not on the chain from the first one: check its down_revision")
    return tuple(chain)


@dataclass
class SchemaStatus:
    current: str | None
    code_head: str
    supported: bool
    reason: str
    newer: list  # applied migrations this code does not know, with their stages

    def as_dict(self):
        return self.__dict__.copy()


def judge_schema(current: str | None, applied: Callable[[], list[tuple[str, str]]]) -> SchemaStatus:
    """Supported: at the code's head; at an earlier revision that only contract migrations separate from
    the head (expanded and backfilled, this code writes every new column itself); or at a later revision
    whose newer migrations are all expand or backfill stages (old code keeps working against an expanded
    schema). current: the database's revision; applied(): its recorded migrations, oldest first, as
    (revision, stage) (read only for a revision this code does not know)."""
    head = code_head()
    known = {m["revision"] for m in known_migrations()}
    if current is None:
        return SchemaStatus(None, head, False, "database is not migrated: run 'erpctl erp migrate'", [])
    if current == head:
        return SchemaStatus(current, head, True, "schema at the code's revision", [])
    if current in known:
        order = [m["revision"] for m in known_migrations()]
        missing = known_migrations()[order.index(current) + 1:]
        if all(m["stage"] == "contract" for m in missing):
            # expanded and backfilled: this code writes every new column itself, so it runs before the
            # contract step as well as after it
            return SchemaStatus(current, head, True,
                                f"schema at {current} is expanded and backfilled; only the contract migration(s) "
                                f"{', '.join(m['revision'] for m in missing)} are still to run "
                                "('erpctl erp migrate' finishes the upgrade)", [])
        return SchemaStatus(current, head, False,
                            f"schema at {current} is older than the code's {head}: run 'erpctl erp migrate'", [])
    newer = [{"revision": rev, "stage": stage} for rev, stage in applied() if rev not in known]
    if current not in {m["revision"] for m in newer}:
        return SchemaStatus(current, head, False,
                            f"schema at unknown revision {current} with no recorded stage; "
                            "run the code that migrated it", newer)
    contract = [m["revision"] for m in newer if m["stage"] not in ("expand", "backfill")]
    if contract:
        return SchemaStatus(current, head, False,
                            f"schema has contract migrations this code predates: {', '.join(contract)}; "
                            "upgrade the code", newer)
    return SchemaStatus(current, head, True, "schema is ahead by expand/backfill migrations only", newer)
