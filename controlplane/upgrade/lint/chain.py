"""The rules across migrations: revision-chain (ids, down_revisions, one head) and stage-order (a
contract that changes what a backfill reads or writes must come after that backfill)."""

from __future__ import annotations

from .findings import ERROR, Finding
from .migration import MigrationFile


def chain_findings(files: list[MigrationFile]) -> list[Finding]:
    out: list[Finding] = []
    by_rev = _revision_chain(files, out)
    _stage_order(by_rev, out)
    return out


def _add(out: list[Finding], m: MigrationFile, line: int, rule: str, message: str, fix: str) -> None:
    out.append(Finding(str(m.path), line, m.revision, rule, ERROR, message, fix))


def _revision_chain(files: list[MigrationFile], out: list[Finding]) -> dict[str, MigrationFile]:
    """The migrations by revision id, after reporting missing or duplicate ids, unknown
    down_revisions and several heads."""
    by_rev: dict[str, MigrationFile] = {}
    for m in files:
        if m.tree is None:
            continue
        if m.revision is None:
            _add(out, m, 1, "revision-chain", "the migration has no module-level revision = '...'",
                 "Give it a unique revision id and a down_revision naming the migration it follows.")
        elif m.revision in by_rev:
            _add(out, m, m.revision_line, "revision-chain",
                 f"revision {m.revision!r} is also declared by {by_rev[m.revision].path.name}",
                 "Give each migration a unique revision id.")
        else:
            by_rev[m.revision] = m
    for m in by_rev.values():
        for d in m.down_revisions:
            if d not in by_rev:
                _add(out, m, m.down_line, "revision-chain", f"down_revision {d!r} is not a migration in this directory",
                     "Set down_revision to the revision this migration follows.")
    referenced = {d for m in by_rev.values() for d in m.down_revisions}
    heads = sorted(r for r in by_rev if r not in referenced)
    if len(heads) > 1:
        for r in heads:
            _add(out, by_rev[r], by_rev[r].revision_line, "revision-chain",
                 f"the revision chain has {len(heads)} heads ({', '.join(heads)}), so the stage order is undefined",
                 "Make one follow the other (down_revision), or merge them with 'alembic merge'.")
    return by_rev


def _ancestors(by_rev: dict[str, MigrationFile], rev: str) -> set[str]:
    parents_of = {r: m.down_revisions for r, m in by_rev.items()}
    seen, stack = set(), list(parents_of.get(rev, ()))
    while stack:
        r = stack.pop()
        if r not in seen:
            seen.add(r)
            stack.extend(parents_of.get(r, ()))
    return seen


def _stage_order(by_rev: dict[str, MigrationFile], out: list[Finding]) -> None:
    backfills = [m for m in by_rev.values() if m.stage == "backfill"]
    for c in by_rev.values():
        if c.stage != "contract":
            continue
        before = _ancestors(by_rev, c.revision)
        for table, column, line, what in c.contract_touches:
            for b in backfills:
                if b.revision in before:
                    continue
                for b_table, words, b_line in b.backfill_refs:
                    if b_table != table or (column is not None and words is not None and column not in words):
                        continue
                    thing = f"{table}.{column}" if column else f"table {table}"
                    _add(out, c, line, "stage-order",
                         f"contract {c.revision} ({what}) changes {thing}, which backfill {b.revision} "
                         f"({b.path.name}:{b_line}) reads or writes, but that backfill does not come before "
                         "this contract in the revision chain",
                         f"Order the chain expand -> backfill -> contract: make {c.revision} follow {b.revision} "
                         "(down_revision), so the backfill has run before the contract removes what it needs.")
                    break
