#!/usr/bin/env python
"""Report times at two history sizes: do reports take time in proportion to the period asked?

For each scale (default 74 and 740: about 0.1 M and 1 M journal lines) the bench makes a fresh
database, seeds it with `erpctl erp seed --scale N` (a whole process, timed: the seed figures), then
times each report through the ERP's services in one process, median of --repeat rounds (the databases
taken in turn within each round):

    trial balance, one month    (date_from = a month's first day, as_of = its last)
    trial balance, as of        (all history up to that month's end)
    balance sheet, as of        (the same day)
    profit and loss, one month
    aging, customers

and prints the times and the large/small ratio of each (the goal: trial balance for one month within
1.5x while the history grows 10x). The query plan of the month's part-month line query is printed
too (EXPLAIN on each backend).

    python bench/reports.py                                    # SQLite, scales 74 and 740
    python bench/reports.py --backend postgres --scales 20,200 --repeat 7 --json

Not a test: it asserts nothing and is never run by pytest. See bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, func, select, text  # noqa: E402

from erp_core.db import Database, normalise_url  # noqa: E402
from erp_core.models import JournalLine  # noqa: E402
from erp_core.services import periods, reports  # noqa: E402

DEFAULT_PG_URL = os.environ.get("ERPCTL_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
ERPCTL = [sys.executable, "-m", "controlplane.cli.main"]


def month_bounds(today: dt.date) -> tuple[dt.date, dt.date]:
    """The month four months back: whole, inside the seeded year."""
    first = (today.replace(day=1) - dt.timedelta(days=100)).replace(day=1)
    last = (first + dt.timedelta(days=32)).replace(day=1) - dt.timedelta(days=1)
    return first, last


def reports_to_time(first: dt.date, last: dt.date) -> dict:
    return {
        "trial_balance_month": lambda s: reports.trial_balance(s, last, first),
        "trial_balance_as_of": lambda s: reports.trial_balance(s, last),
        "balance_sheet": lambda s: reports.balance_sheet(s, last),
        "profit_and_loss_month": lambda s: reports.profit_and_loss(s, first, last),
        "aging_customers": lambda s: reports.aging(s, "customer", last),
    }


def seed(url: str, data_dir: Path, scale: int) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    common = ["--data-dir", str(data_dir), "--database-url", url]
    subprocess.run([*ERPCTL, "erp", "migrate", *common], check=True, env=env, capture_output=True)
    t0 = time.perf_counter()
    subprocess.run([*ERPCTL, "--json", "erp", "seed", "--scale", str(scale), *common], check=True, env=env,
                   capture_output=True)
    return time.perf_counter() - t0


def plan(db: Database, first: dt.date, last: dt.date) -> list[str]:
    """EXPLAIN of the line query a part-month (here: the month's second half) runs."""
    with db.session(write=False) as s:
        stmt = periods.lines_statement(first + dt.timedelta(days=14), last)
        sql = str(stmt.compile(db.engine, compile_kwargs={"literal_binds": True}))
        prefix = "EXPLAIN QUERY PLAN " if db.engine.dialect.name == "sqlite" else "EXPLAIN "
        return [" | ".join(str(c) for c in row) for row in s.execute(text(prefix + sql))]


def prepare(url: str, scale: int, data_root: Path) -> dict:
    """Seed the scale's database (a whole process, timed) and read its size."""
    seconds = seed(url, data_root / f"scale-{scale}", scale)
    db = Database(url)
    try:
        with db.session(write=False) as s:
            lines = s.scalar(select(func.count()).select_from(JournalLine))
            complete = periods.complete(s)
        first, last = month_bounds(dt.date.today())
        return {"scale": scale, "seed_seconds": round(seconds, 1), "journal_lines": lines,
                "period_balances_complete": complete, "month": f"{first:%Y-%m}", "plan": plan(db, first, last)}
    finally:
        db.dispose()


def measure(urls: list[str], repeat: int) -> list[dict]:
    """Each report's median time per database, the databases taken in turn within every round (a load
    that comes and goes falls on all of them alike)."""
    first, last = month_bounds(dt.date.today())
    dbs = [Database(url) for url in urls]
    samples = [{name: [] for name in reports_to_time(first, last)} for _ in dbs]
    try:
        for _ in range(repeat):
            for db, mine in zip(dbs, samples):
                for name, run in reports_to_time(first, last).items():
                    with db.session(write=False) as s:
                        t0 = time.perf_counter()
                        run(s)
                        mine[name].append(time.perf_counter() - t0)
    finally:
        for db in dbs:
            db.dispose()
    return [{name: round(statistics.median(v) * 1000, 2) for name, v in mine.items()} for mine in samples]


def database(backend: str, pg_url: str, data_root: Path, scale: int):
    if backend == "sqlite":
        path = data_root / f"scale-{scale}" / "erp.sqlite3"
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{path}", None
    name = f"bench_reports_{uuid.uuid4().hex[:10]}"
    admin = create_engine(normalise_url(pg_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.exec_driver_sql(f'CREATE DATABASE "{name}"')
    admin.dispose()
    base = pg_url.rsplit("/", 1)[0]
    return f"{base}/{name}", name


def drop(pg_url: str, name: str | None) -> None:
    if name is None:
        return
    admin = create_engine(normalise_url(pg_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    ap.add_argument("--pg-url", default=DEFAULT_PG_URL)
    ap.add_argument("--scales", default="74,740", help="two scales, comma-separated (default 74,740)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--keep", action="store_true", help="keep the databases (their URLs are printed)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    data_root = Path(tempfile.mkdtemp(prefix="bench-reports-"))
    results, made = [], []
    try:
        for scale in (int(x) for x in args.scales.split(",")):
            url, pg_name = database(args.backend, args.pg_url, data_root, scale)
            made.append((url, pg_name))
            results.append({**prepare(url, scale, data_root), "url": url if args.keep else None})
        for run, ms in zip(results, measure([url for url, _ in made], args.repeat)):
            run["ms"] = ms
        load = os.getloadavg()
    finally:
        if not args.keep:
            for _url, pg_name in made:
                drop(args.pg_url, pg_name)
            shutil.rmtree(data_root, ignore_errors=True)
    small, large = results[0], results[-1]
    ratios = {k: round(large["ms"][k] / small["ms"][k], 2) if small["ms"][k] else None for k in small["ms"]}
    out = {"backend": args.backend, "runs": results, "ratio_large_to_small": ratios, "load_average": load}
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"backend {args.backend}; median of {args.repeat}, the databases in turn each round; month "
          f"{small['month']}; load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    for r in results:
        print(f"scale {r['scale']}: {r['journal_lines']:,} journal lines, seeded in {r['seed_seconds']} s, "
              f"period balances complete: {r['period_balances_complete']}")
    print(f"{'report':<24}" + "".join(f"{'scale ' + str(r['scale']):>14}" for r in results) + f"{'ratio':>9}")
    for k in small["ms"]:
        print(f"{k:<24}" + "".join(f"{r['ms'][k]:>11.2f} ms" for r in results) + f"{ratios[k]:>9}")
    print("plan of a part-month's line query (large):")
    for row in large["plan"]:
        print("  " + row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
