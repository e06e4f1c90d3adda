"""`erpctl upgrade plan`: each stage with its lock level, estimated rows and time, its rollback method,
and the point of no return; nothing is changed."""

from __future__ import annotations

from sqlalchemy import inspect, text

from erp_core.ops import __version__ as ERP_VERSION

from .. import release as releases
from ..release.supervisor import read_serving
from ..errors import NoUpgrade
from . import state as S
from .backfill import DEFAULT_BUDGET_SECONDS
from .run import (LOCK_TIMEOUT, Run, UpgradeOptions, backfills_of, database_bytes, pending_migrations, revision,
                  stage_groups)

# Expected backfill rates (the targets bench/upgrade.py checks) for the time estimates.
EXPECTED_ROWS_PER_SECOND = {"sqlite": 300_000, "postgresql": 80_000}
# The read-only stages' cost, measured (tests/controlplane/upgrade/test_estimates.py prints estimate
# against measured, at the fixture's 3 k and at 100-400 k backfilled rows; fixed parts from a quiet
# machine, per-row costs from the large runs): (fixed seconds, seconds per row of the backfilled
# tables). The fixed part is the
# maintenance switches, connecting, the catalogue reads, the invariants on a small database and the
# contract's DDL; per row, verify scans the tables once (checksums) besides the invariants, contract
# twice (checksums before and after) and rewrites them (SQLite rebuilds a table to drop a column;
# PostgreSQL validates NOT NULL and CHECK constraints by a scan).
READ_ONLY_COST = {"sqlite": {"verify": (0.1, 19e-6), "contract": (0.1, 18e-6)},
                  "postgresql": {"verify": (0.3, 8.5e-6), "contract": (0.5, 5e-6)}}
# A switch: erpctl up sees the new `current` (1 s poll), starts the new ERP beside the old one, and the
# upgrade sees it serve (0.1 s poll); the start is how long the running erpctl up's ERP took to serve.
SWITCH_POLLS_SECONDS = 0.55  # half of each poll interval (1 s, 0.1 s), on average
SWITCH_START_SECONDS = 3.5  # when no erpctl up has recorded its start-up


def switch_seconds(ctx: Run) -> float:
    started = read_serving(ctx.target).get("ready_seconds")
    return round(SWITCH_POLLS_SECONDS + (started if started else SWITCH_START_SECONDS), 1)


def read_only_seconds(dialect: str, stage: str, rows: int) -> float:
    fixed, per_row = READ_ONLY_COST.get(dialect, READ_ONLY_COST["postgresql"])[stage]
    return round(fixed + per_row * rows, 1)


def describe(ctx: Run) -> dict:
    """What an upgrade from the database's revision to the target release would do."""
    target = ctx.target
    cur = releases.current(target)
    to_version = ctx.opts.to_version or ERP_VERSION
    rev = revision(ctx)
    if rev is None:
        raise NoUpgrade("the database is not migrated yet", fix="Create it with 'erpctl erp migrate'.")
    pending = pending_migrations(rev)
    if not pending:
        raise NoUpgrade(f"the database is already at {rev}, the head of release {ERP_VERSION}",
                        fix="Nothing to do.")
    groups = stage_groups(pending)
    return {"from_version": cur.version if cur else None, "to_version": to_version, "from_revision": rev,
            "to_revision": pending[-1]["revision"], "expand_revision": groups["expand"],
            "backfill_revision": groups["backfill"], "contract_revision": groups["contract"],
            "migrations": pending}


def _row_estimates(ctx: Run, tables: list[str]) -> dict[str, int]:
    out = {}
    insp = inspect(ctx.engine)
    with ctx.engine.connect() as c:
        for t in sorted(set(tables)):
            if insp.has_table(t):
                out[t] = int(c.execute(text(f'SELECT count(*) FROM "{t}"')).scalar())
    return out


def stage_plan(ctx: Run, d: dict) -> dict:
    """Each stage with its lock level, estimated rows and time, rollback method; and the figures they
    come from."""
    opts = ctx.opts
    bfs = backfills_of([m["revision"] for m in d["migrations"] if m["stage"] == "backfill"])
    rows = _row_estimates(ctx, [b.table for b in bfs])
    total = sum(rows.get(b.table, 0) for b in bfs)
    rate = EXPECTED_ROWS_PER_SECOND.get(ctx.dialect, 80_000)
    budget = (opts.stall_budget_ms / 1000) if opts.stall_budget_ms else DEFAULT_BUDGET_SECONDS.get(ctx.dialect, 0.5)
    db_bytes = database_bytes(ctx)
    pg = ctx.dialect == "postgresql"
    down = f"migrate down to {d['from_revision']} in one transaction and serve release {d['from_version']} again; " \
           "rows written meanwhile are kept in its representation"
    stages = [
        {"stage": "preflight", "lock": "none", "rows": 0, "seconds": 2, "online": True,
         "rollback": "nothing to undo"},
        {"stage": "backup", "lock": "none (online snapshot)", "rows": 0, "seconds": round(db_bytes / 40e6 + 3, 1),
         "online": True, "rollback": "nothing to undo (the backup is kept)"},
        {"stage": "expand", "revision": d["expand_revision"], "online": True, "rows": 0, "seconds": 1,
         "lock": ("ACCESS EXCLUSIVE on each altered table, metadata only, waiting at most "
                  f"{LOCK_TIMEOUT} per attempt" if pg else "the database write lock for one short transaction"),
         "rollback": down},
        {"stage": "backfill", "revision": d["backfill_revision"], "online": True, "rows": total,
         "seconds": round(total / rate, 1),
         "lock": (f"row locks of one batch at a time; writers wait at most ~{budget * 1000:.0f} ms" if pg else
                  f"the write lock for one batch at a time; writers wait at most ~{budget * 1000:.0f} ms"),
         "tables": {b.name: rows.get(b.table, 0) for b in bfs}, "rollback": down},
        {"stage": "verify", "online": False, "rows": total, "seconds": read_only_seconds(ctx.dialect, "verify", total),
         "lock": "maintenance mode: the ERP serves reads and refuses writes", "rollback": down},
        {"stage": "switch", "online": False, "rows": 0, "seconds": switch_seconds(ctx),
         "lock": f"maintenance mode; the ERP restarts on release {d['to_version']}", "rollback": down},
        {"stage": "contract", "revision": d["contract_revision"] or d["to_revision"], "online": False,
         "rows": total, "seconds": read_only_seconds(ctx.dialect, "contract", total), "point_of_no_return": True,
         "lock": ("maintenance mode; VALIDATE scans under SHARE UPDATE EXCLUSIVE, then a brief ACCESS EXCLUSIVE"
                  if pg else "maintenance mode; the write lock for one transaction"),
         "rollback": "restore the pre-upgrade backup: writes made after it are lost (listed by 'erpctl upgrade "
                     "rollback')"},
    ]
    return {"stages": stages, "stall_budget_ms": round(budget * 1000), "estimated_rows_per_second": rate,
            "database_bytes": db_bytes}


def plan(opts: UpgradeOptions) -> dict:
    """Each stage with its lock level, estimated rows and time, rollback method, and the point of no return."""
    ctx = Run(opts, S.new())
    try:
        d = describe(ctx)
        p = stage_plan(ctx, d)
        return {**{k: v for k, v in d.items() if k != "migrations"}, "database": ctx.target.display_url,
                "engine": ctx.dialect, **p, "migrations": d["migrations"], "point_of_no_return": "contract",
                "estimated_seconds": round(sum(s["seconds"] for s in p["stages"]), 1)}
    finally:
        ctx.close()
