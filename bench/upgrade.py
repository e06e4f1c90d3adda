#!/usr/bin/env python
"""Release 1.1's backfill, staged (erpctl's batch controller) side by side with the naive migration.

For each backend, on the same 1.0 database grown to --order-lines sales order lines:

    staged   controlplane.upgrade.backfill.run_backfills: key-range batches, each with its checkpoint in
             one transaction, sized and paced by the controller from a canary writer's waits
    naive    the same backfills in ONE transaction (erp_core.backfill.run_all, unbounded batches)
    resume   the staged backfill in a child process, SIGKILLed at a random moment, then run again:
             what the second run fills against what was pending at the kill and the batch in flight

While each backfill runs, two writers in processes of their own behave like release 1.0: the writer
creates orders (one transaction: the SO number, an order, two lines, their audit rows; only 1.0's
columns, 0002's compatibility triggers fill the new ones), the editor changes the notes of existing
orders picked at random. Each times every transaction: its latency is the stall a user of the ERP
sees. A few seconds of the writers alone before each backfill give the baseline.

    python bench/upgrade.py                                  # both backends (2 M / 5 M order lines)
    python bench/upgrade.py --backend sqlite --order-lines 200000 --skip-naive
    python bench/upgrade.py --json

Generated 1.0 databases are cached (SQLite files under --cache, PostgreSQL template databases
erp_bench_1_0_<lines>); every run works on copies. Not a test: see bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

FIXTURE = ROOT / "tests" / "fixtures" / "erp-1.0.sqlite3"
DEFAULT_PG_URL = os.environ.get("ERPCTL_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
DEFAULT_LINES = {"sqlite": 2_000_000, "postgresql": 5_000_000}
# The targets: the worst writer stall and the staged backfill's rate, on a 2-core machine.
TARGETS = {"sqlite": {"max_stall_ms": 100, "rows_per_second": 300_000},
           "postgresql": {"max_stall_ms": 500, "rows_per_second": 80_000}}
WRITER_TAG = "bench-writer"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def loadavg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    s = sorted(values)
    return s[max(0, math.ceil(q * len(s)) - 1)]


def latency_summary(values: list[float]) -> dict:
    if not values:
        return {"count": 0}
    ms = [v * 1000 for v in values]
    return {"count": len(ms), "median_ms": round(pct(ms, 0.5), 2), "p99_ms": round(pct(ms, 0.99), 1),
            "max_ms": round(max(ms), 1)}


# ---- databases ------------------------------------------------------------------------------------

def _lines(conn) -> tuple[int, int]:
    from sqlalchemy import text

    total = conn.execute(text("SELECT count(*) FROM sales_order_lines")).scalar()
    drafts = conn.execute(text("SELECT count(*) FROM sales_order_lines l JOIN sales_orders o ON o.id = l.order_id "
                               "WHERE o.state = 'draft'")).scalar()
    return int(total), int(drafts)


def grow(url: str, order_lines: int) -> dict:
    """Grow a 1.0 database to about `order_lines` sales order lines: tests/.../bulk.py doubles the draft
    orders up to the last doubling that stays at or below the target, then the first draft orders
    are copied once more (the same set-based copy) to reach it."""
    from sqlalchemy import create_engine, text

    from erp_core.db import normalise_url
    from tests.controlplane.upgrade.bulk import _columns, grow_draft_orders

    engine = create_engine(normalise_url(url))
    try:
        with engine.connect() as c:
            total, drafts = _lines(c)
        if not drafts:
            raise ValueError("the database has no draft sales order to copy")
        goal = total
        while goal + (goal - total + drafts) <= order_lines:  # lines after one more doubling
            goal += goal - total + drafts
        if goal > total:
            grow_draft_orders(url, goal)
        order_cols = _columns(engine, "sales_orders", {"id", "number", "external_id"})
        line_cols = _columns(engine, "sales_order_lines", {"id", "order_id"})
        oc, lc = ", ".join(order_cols), ", ".join(line_cols)
        with engine.begin() as c:
            total, _ = _lines(c)
            need = order_lines - total
            if need > 0:
                # the draft order whose running line count first reaches `need`: copy the drafts up to it
                cutoff = c.execute(text(
                    "SELECT id FROM (SELECT o.id, SUM(COUNT(l.id)) OVER (ORDER BY o.id) AS run "
                    "FROM sales_orders o JOIN sales_order_lines l ON l.order_id = o.id "
                    "WHERE o.state = 'draft' GROUP BY o.id) x WHERE run >= :need ORDER BY id LIMIT 1"),
                    {"need": need}).scalar()
                off = c.execute(text("SELECT max(id) FROM sales_orders")).scalar()
                cutoff = off if cutoff is None else cutoff
                c.execute(text(f"INSERT INTO sales_orders (id, number, external_id, {oc}) "
                               f"SELECT id + :off, 'BULK-' || CAST(id + :off AS VARCHAR(20)), NULL, {oc} "
                               "FROM sales_orders WHERE state = 'draft' AND id <= :cut ORDER BY id"),
                          {"off": off, "cut": cutoff})
                c.execute(text(f"INSERT INTO sales_order_lines (order_id, {lc}) "
                               f"SELECT l.order_id + :off, {', '.join('l.' + x for x in line_cols)} "
                               "FROM sales_order_lines l JOIN sales_orders o ON o.id = l.order_id "
                               "WHERE o.state = 'draft' AND o.id <= :cut ORDER BY l.id"), {"off": off, "cut": cutoff})
                if engine.dialect.name == "postgresql":
                    for t in ("sales_orders", "sales_order_lines"):
                        c.execute(text(f"SELECT setval(pg_get_serial_sequence('{t}', 'id'), "
                                       f"(SELECT max(id) FROM {t}))"))
            counts = {t: int(c.execute(text(f"SELECT count(*) FROM {t}")).scalar())
                      for t in ("sales_orders", "sales_order_lines")}
        return counts
    finally:
        engine.dispose()


class SqliteSite:
    backend = "sqlite"

    def __init__(self, order_lines: int, cache: Path, work: Path):
        self.order_lines = order_lines
        self.dir = cache / f"upgrade-sqlite-{order_lines}"
        self.work = work
        self.info: dict = {}

    def ensure(self) -> dict:
        ready = self.dir / "ready.json"
        if ready.exists():
            self.info = json.loads(ready.read_text())
            return self.info
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        db = self.dir / "erp-1.0.sqlite3"
        shutil.copy(FIXTURE, db)
        log(f"sqlite: growing a 1.0 database to {self.order_lines:,} order lines (cached in {self.dir})")
        t0 = time.perf_counter()
        counts = grow(f"sqlite:///{db}", self.order_lines)
        con = sqlite3.connect(db)
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        con.close()
        self.info = {**counts, "generate_seconds": round(time.perf_counter() - t0, 1), "bytes": db.stat().st_size}
        ready.write_text(json.dumps(self.info))
        return self.info

    def copy(self, name: str) -> str:
        dest = self.work / f"{name}.sqlite3"
        shutil.copy(self.dir / "erp-1.0.sqlite3", dest)
        return f"sqlite:///{dest}"

    def drop(self, url: str) -> None:
        path = url[len("sqlite:///"):]
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(Exception):
                os.unlink(path + suffix)

    def close(self) -> None:
        pass


class PgSite:
    backend = "postgresql"

    def __init__(self, order_lines: int, admin_url: str, template: str | None = None):
        from sqlalchemy import create_engine

        from erp_core.db import normalise_url

        self.order_lines = order_lines
        self.admin_url = admin_url
        self.admin = create_engine(normalise_url(admin_url), isolation_level="AUTOCOMMIT")
        self.template = template or f"erp_bench_1_0_{order_lines}"
        self.created: list[str] = []
        self.info: dict = {}

    def url(self, name: str) -> str:
        return f"{self.admin_url.rsplit('/', 1)[0]}/{name}"

    def _exists(self, name: str) -> bool:
        from sqlalchemy import text

        with self.admin.connect() as c:
            return bool(c.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).scalar())

    def _sql(self, sql: str) -> None:
        from sqlalchemy import text

        with self.admin.connect() as c:
            c.execute(text(sql))

    def ensure(self) -> dict:
        from sqlalchemy import text

        if self._exists(self.template):
            with self.admin.connect() as c:
                note = c.execute(text("SELECT shobj_description(oid, 'pg_database') FROM pg_database "
                                      "WHERE datname = :n"), {"n": self.template}).scalar()
            self.info = json.loads(note or "{}")
            return self.info
        building = self.template + "_building"
        self._sql(f'DROP DATABASE IF EXISTS "{building}" WITH (FORCE)')
        self._sql(f'CREATE DATABASE "{building}"')
        url = self.url(building)
        log(f"postgresql: building a 1.0 template database {self.template} with {self.order_lines:,} order lines "
            "(a few minutes, once)")
        t0 = time.perf_counter()
        from erp_core.db import migrate

        migrate(url, "0001")
        copied = copy_fixture_to(url)
        log(f"  fixture copied ({sum(copied.values()):,} rows), growing")
        counts = grow(url, self.order_lines)
        log("  VACUUM ANALYZE, CHECKPOINT")
        from sqlalchemy import create_engine

        from erp_core.db import normalise_url

        e = create_engine(normalise_url(url), isolation_level="AUTOCOMMIT")
        with e.connect() as c:
            c.execute(text("VACUUM (ANALYZE)"))
            c.execute(text("CHECKPOINT"))
            size = int(c.execute(text("SELECT pg_database_size(current_database())")).scalar())
        e.dispose()
        self.info = {**counts, "generate_seconds": round(time.perf_counter() - t0, 1), "bytes": size}
        self._sql(f'ALTER DATABASE "{building}" RENAME TO "{self.template}"')
        with self.admin.connect() as c:
            c.execute(text(f"COMMENT ON DATABASE \"{self.template}\" IS '{json.dumps(self.info)}'"))
        return self.info

    def copy(self, name: str) -> str:
        db = f"erp_bench_up_{name}_{uuid.uuid4().hex[:8]}"
        self._sql(f'CREATE DATABASE "{db}" TEMPLATE "{self.template}" STRATEGY FILE_COPY')
        self.created.append(db)
        return self.url(db)

    def drop(self, url: str) -> None:
        db = url.rsplit("/", 1)[1]
        self._sql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        if db in self.created:
            self.created.remove(db)

    def close(self) -> None:
        for db in list(self.created):
            with contextlib.suppress(Exception):
                self._sql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        self.admin.dispose()


def copy_fixture_to(url: str) -> dict:
    """Copy every row of the 1.0 fixture into a PostgreSQL database at schema 0001, table by table in
    foreign-key order, ids kept, sequences set after."""
    from sqlalchemy import MetaData, create_engine, text

    from erp_core.db import normalise_url

    src = create_engine(f"sqlite:///file:{FIXTURE}?mode=ro&uri=true")
    dst = create_engine(normalise_url(url))
    counts = {}
    try:
        smeta, dmeta = MetaData(), MetaData()
        smeta.reflect(src)
        dmeta.reflect(dst)
        with src.connect() as s, dst.begin() as d:
            d.execute(text("SET LOCAL TIME ZONE 'UTC'"))
            for table in dmeta.sorted_tables:
                if table.name == "alembic_version" or table.name not in smeta.tables:
                    continue
                d.execute(table.delete())  # rows 0001 itself created (the same ones the fixture has)
                rows = [dict(r._mapping) for r in s.execute(smeta.tables[table.name].select())]
                cols = set(table.columns.keys())
                rows = [{k: v for k, v in r.items() if k in cols} for r in rows]
                if rows:
                    d.execute(table.insert(), rows)
                counts[table.name] = len(rows)
            for table in dmeta.sorted_tables:
                for col in table.primary_key.columns:
                    seq = d.execute(text("SELECT pg_get_serial_sequence(:t, :c)"),
                                    {"t": table.name, "c": col.name}).scalar()
                    if seq:
                        d.execute(text(f'SELECT setval(:s, COALESCE((SELECT max("{col.name}") '
                                       f'FROM "{table.name}"), 0) + 1, false)'),
                                  {"s": seq})
        return counts
    finally:
        src.dispose()
        dst.dispose()


# ---- the 1.0 writers (child processes) --------------------------------------------------------------

def _connect(backend: str, url: str):
    """A plain connection with the ERP's settings (erp_core/db.py): SQLite WAL, foreign keys, busy timeout
    30 s, synchronous NORMAL, BEGIN IMMEDIATE for writes; PostgreSQL through psycopg, as the ERP."""
    if backend == "postgresql":
        import psycopg

        con = psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"))
        con.execute("SET TIME ZONE 'UTC'")
        con.commit()
        return con
    con = sqlite3.connect(url[len("sqlite:///"):], isolation_level=None, timeout=30)
    for pragma in ("journal_mode=WAL", "foreign_keys=ON", "busy_timeout=30000", "synchronous=NORMAL"):
        con.execute(f"PRAGMA {pragma}")
    return con


def writer_main(backend: str, url: str, out: str, interval: float, tag: str, kind: str) -> None:
    """Write as release 1.0 does until stdin closes, one transaction at a time, then write every
    transaction's start (time.monotonic, shared by the processes of the machine), latency, id and
    error to `out`. kind "create": a new draft order with two lines (the SO number from doc_sequences,
    the order, its lines, their audit rows). kind "edit": a user changes the notes of an existing
    order picked at random (the row locked first, as the ERP does, and its audit row)."""
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    pg = backend == "postgresql"
    con = _connect(backend, url)
    ph = "%s" if pg else "?"
    cur = con.cursor()
    # a draft order of the fixture is the model of what the writer creates
    cur.execute("SELECT o.id, o.partner_id, o.warehouse_id, o.net_total, o.tax_total, o.gross_total "
                "FROM sales_orders o WHERE o.state = 'draft' ORDER BY o.id LIMIT 1")
    model = cur.fetchone()
    cur.execute("SELECT product_id, quantity, unit_price, discount_percent, tax_rate_percent, net_amount, tax_amount "
                f"FROM sales_order_lines WHERE order_id = {ph} ORDER BY id LIMIT 2", (model[0],))
    lines = cur.fetchall()
    cur.execute("SELECT min(id), max(id) FROM sales_orders")
    lo, hi = cur.fetchone()
    con.commit()
    rng = random.Random()
    p = lambda n: ", ".join([ph] * n)  # noqa: E731
    cast = "::json" if pg else ""
    samples: list[tuple[float, float, int | None, str | None]] = []
    print("ready", flush=True)
    while not stop.is_set():
        now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        stamp = now if pg else now.strftime("%Y-%m-%d %H:%M:%S.%f")
        t0 = time.monotonic()
        oid, err = None, None
        try:
            if not pg:
                cur.execute("BEGIN IMMEDIATE")
            if kind == "edit":
                cur.execute(f"SELECT id FROM sales_orders WHERE id >= {ph} ORDER BY id LIMIT 1"
                            + (" FOR UPDATE" if pg else ""), (rng.randint(lo, hi),))
                oid = cur.fetchone()[0]
                text_ = f"edited {rng.random():.6f}"
                cur.execute(f"UPDATE sales_orders SET notes = {ph} WHERE id = {ph}", (text_, oid))
                audit = [("update", "sales_orders", oid, {"notes": text_})]
            else:
                cur.execute("UPDATE doc_sequences SET last = last + 1 WHERE name = 'SO' RETURNING last")
                number = f"SO{cur.fetchone()[0]:06d}"
                cur.execute("INSERT INTO sales_orders (channel, external_id, number, partner_id, warehouse_id, state, "
                            "net_total, tax_total, gross_total, notes, order_date, created_by) "
                            f"VALUES ({p(12)}) RETURNING id",
                            ("web", None, number, model[1], model[2], "draft", model[3], model[4], model[5], "",
                             stamp, tag))
                oid = cur.fetchone()[0]
                ids = []
                for ln in lines:
                    cur.execute("INSERT INTO sales_order_lines (order_id, product_id, quantity, unit_price, "
                                "discount_percent, tax_rate_percent, net_amount, tax_amount) "
                                f"VALUES ({p(8)}) RETURNING id", (oid, *ln))
                    ids.append(cur.fetchone()[0])
                audit = [("create", "sales_orders", oid, {"number": number, "state": "draft"})] + \
                        [("create", "sales_order_lines", i, {"order_id": oid}) for i in ids]
            for action, entity, ident, after in audit:
                cur.execute("INSERT INTO audit_log (at, actor, action, entity, entity_id, before, after) "
                            f"VALUES ({ph}, {ph}, {ph}, {ph}, {ph}, NULL, {ph}{cast})",
                            (stamp, tag, action, entity, str(ident), json.dumps(after, default=str)))
            if pg:
                con.commit()
            else:
                cur.execute("COMMIT")
        except Exception as exc:  # noqa: BLE001 - a failed transaction is a finding: record it
            err = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
            oid = None
            try:
                con.rollback() if pg else cur.execute("ROLLBACK")
            except Exception:  # noqa: BLE001
                pass
        samples.append((t0, time.monotonic() - t0, oid, err))
        stop.wait(interval * rng.uniform(0.5, 1.5))
    con.close()
    Path(out).write_text(json.dumps(samples))


class Writer:
    """A writer child process, and its transactions once it has stopped."""

    def __init__(self, backend: str, url: str, work: Path, interval: float, tag: str, kind: str = "create"):
        self.out = work / f"writer-{uuid.uuid4().hex[:8]}.json"
        self.tag, self.kind = tag, kind
        self.proc = subprocess.Popen([sys.executable, __file__, "_writer", backend, url, str(self.out),
                                      str(interval), tag, kind], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True)
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            self.proc.kill()
            raise RuntimeError(f"the {kind} writer did not start: {line!r}")
        self.samples: list = []

    def stop(self) -> list:
        self.proc.stdin.close()
        self.proc.wait(timeout=600)
        self.samples = json.loads(self.out.read_text())
        self.out.unlink()
        return self.samples

    def window(self, t0: float, t1: float) -> dict:
        inside = [s for s in self.samples if t0 <= s[0] <= t1]
        out = latency_summary([s[1] for s in inside])
        out["errors"] = sorted({s[3] for s in inside if s[3]})
        out["failed"] = sum(1 for s in inside if s[3])
        return out

    def committed(self) -> list[int]:
        return [s[2] for s in self.samples if s[2] is not None]


# ---- one backend -------------------------------------------------------------------------------------

def _engine(url: str):
    from erp_core.db import make_engine

    return make_engine(url, pool_size=4, max_overflow=4)


def expand(url: str) -> float:
    from erp_core.db import migrate

    t0 = time.perf_counter()
    rev = migrate(url, "0002")
    assert rev == "0002", rev
    return time.perf_counter() - t0


def check_done(url: str, writer: Writer | None = None, editor: Writer | None = None) -> dict:
    """Nothing left to fill; every order the writer committed is there with its two lines, and every
    edit the editor committed has its audit row."""
    from sqlalchemy import text

    from erp_core import backfill as B

    engine = _engine(url)
    try:
        with engine.connect() as c:
            left = {bf.name: n for bf in B.backfills() if (n := B.remaining(c, bf))}
            out = {"pending_after": sum(left.values()), "pending_by_backfill": left}
            if writer is not None:
                ids = writer.committed()
                orders = c.execute(text("SELECT count(*) FROM sales_orders WHERE created_by = :t"),
                                   {"t": writer.tag}).scalar()
                lines = c.execute(text("SELECT count(*) FROM sales_order_lines l JOIN sales_orders o "
                                       "ON o.id = l.order_id WHERE o.created_by = :t"), {"t": writer.tag}).scalar()
                out.update(writer_committed=len(ids), writer_orders_found=int(orders), writer_lines_found=int(lines),
                           writer_rows_ok=int(orders) == len(ids) and int(lines) == 2 * len(ids))
            if editor is not None:
                edits = c.execute(text("SELECT count(*) FROM audit_log WHERE actor = :t AND action = 'update'"),
                                  {"t": editor.tag}).scalar()
                out.update(editor_committed=len(editor.committed()), editor_edits_found=int(edits),
                           editor_rows_ok=int(edits) == len(editor.committed()))
        return out
    finally:
        engine.dispose()


def run_with_writer(site, name: str, args, work: Path, backfill_fn) -> dict:
    """A fresh copy, expanded; the writers alone for a baseline, then `backfill_fn(url)` with them on."""
    url = site.copy(name)
    try:
        fig = {"expand_seconds": round(expand(url), 2)}
        writer = Writer(site.backend, url, work, args.writer_interval, f"{WRITER_TAG}-{name}")
        editor = (Writer(site.backend, url, work, args.editor_interval, f"{WRITER_TAG}-{name}-edit", "edit")
                  if args.editor_interval > 0 else None)
        try:
            b0 = time.monotonic()
            time.sleep(args.baseline)
            t0 = time.monotonic()
            fig.update(backfill_fn(url))
            t1 = time.monotonic()
            time.sleep(0.5)
        finally:
            writer.stop()
            if editor is not None:
                editor.stop()
        fig["writer_baseline"] = writer.window(b0, t0)
        fig["writer"] = writer.window(t0, t1)
        if editor is not None:
            fig["editor_baseline"] = editor.window(b0, t0)
            fig["editor"] = editor.window(t0, t1)
        fig["seconds"] = round(t1 - t0, 2)
        fig["rows_per_second"] = round(fig["rows"] / (t1 - t0)) if t1 > t0 else 0
        fig.update(check_done(url, writer, editor))
        return fig
    finally:
        site.drop(url)


def staged(url: str, budget: float | None) -> dict:
    from controlplane.upgrade.backfill import run_backfills
    from erp_core.backfill import backfills

    engine = _engine(url)
    try:
        f = run_backfills(engine, backfills(), budget=budget)
    finally:
        engine.dispose()
    big = max(f["backfills"], key=lambda b: b["rows_done"])
    return {"rows": f["rows"], "controller_seconds": f["seconds"], "canary": f["canary"], "budget_ms": f["budget_ms"],
            "final_batch": big["batch"], "final_pause_ms": big["pause_ms"],
            "batches": sum(b["batches"] for b in f["backfills"]),
            "backfills": f["backfills"], "controller": f.get("controller")}


def naive(url: str) -> dict:
    from erp_core.backfill import backfills, run_all

    engine = _engine(url)
    try:
        rows = 0
        with engine.connect().execution_options(erp_write=True) as conn, conn.begin():
            for bf in backfills():
                rows += run_all(conn, bf, limit=10 ** 12)
        return {"rows": rows}
    finally:
        engine.dispose()


def staged_child_main(url: str, budget: float) -> None:
    """The staged backfill, reporting each batch on stdout before it commits (for the resume run)."""
    from controlplane.upgrade.backfill import run_backfills
    from erp_core.backfill import backfills

    def on_batch(bf, after, limit, result):
        if result is None:
            print(json.dumps({"start": bf.name, "after": after, "limit": limit}), flush=True)
        else:
            print(json.dumps({"batch": bf.name, "lo": after, "hi": result.last_key, "rows": result.rows,
                              "limit": limit}), flush=True)

    engine = _engine(url)
    f = run_backfills(engine, backfills(), budget=budget or None, on_batch=on_batch)
    engine.dispose()
    print(json.dumps({"done": f["rows"]}), flush=True)


def resume(site, args, rng: random.Random, total_rows: int) -> dict:
    """Kill the staged backfill at a random moment, then run it again from its checkpoints.

    The child reports each batch as it starts and again, with its key range and rows, before it
    commits; it is SIGKILLed a random time (0-300 ms) after its reported rows pass a random fraction
    of the total. Then: the checkpoints, the rows committed and still pending, the batch in flight
    (the keys between its backfill's checkpoint and the end of that batch), and a second run."""
    from sqlalchemy import text

    from erp_core import backfill as B

    url = site.copy("resume")
    try:
        expand(url)
        specs = {bf.name: bf for bf in B.backfills()}
        proc = subprocess.Popen([sys.executable, __file__, "_staged", url, str(args.budget_ms or 0)],
                                stdout=subprocess.PIPE, text=True)
        lines: list[dict] = []
        reported = [0]

        def read():
            for line in proc.stdout:
                item = json.loads(line)
                lines.append(item)
                reported[0] += item.get("rows", 0) if "batch" in item else 0

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        fraction = rng.uniform(0.05, 0.9)
        t0 = time.monotonic()
        while reported[0] < fraction * total_rows and proc.poll() is None:
            time.sleep(0.001)
        time.sleep(rng.uniform(0, 0.3))
        if proc.poll() is not None:
            raise RuntimeError("the staged child finished before the kill: raise --order-lines")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        killed_after = time.monotonic() - t0
        reader.join(5)
        engine = _engine(url)
        try:
            with engine.connect() as c:
                ckpt = {n: B.checkpoint(c, bf) for n, bf in specs.items()}
                done = {n: B.rows_done(c, bf) for n, bf in specs.items()}
                pending = {n: B.remaining(c, bf) for n, bf in specs.items()}
                last = next(x for x in reversed(lines) if "start" in x or "batch" in x)
                name = last.get("start") or last.get("batch")
                bf = specs[name]
                lo, limit = last.get("after", last.get("lo")), last["limit"]
                if "batch" in last and ckpt[name] == last["hi"]:  # it committed: the kill fell between batches
                    inflight = {"backfill": name, "state": "committed before the kill", "range": None, "rows": 0,
                                "batch_limit": limit}
                else:
                    if "batch" in last:  # its UPDATE was done, the commit was not
                        hi, state = last["hi"], "filled, not committed"
                    else:  # killed inside run_batch: its range is the next `limit` keys after the checkpoint
                        hi = c.execute(text(f"SELECT max({bf.key}) FROM (SELECT {bf.key} FROM {bf.table} "
                                            f"WHERE {bf.key} > :lo ORDER BY {bf.key} LIMIT :n) x"),
                                       {"lo": lo, "n": limit}).scalar()
                        state = "running"
                    rows = c.execute(text(f"SELECT count(*) FROM {bf.table} WHERE {bf.key} > :lo AND "
                                          f"{bf.key} <= :hi AND ({bf.pending})"), {"lo": lo, "hi": hi}).scalar()
                    inflight = {"backfill": name, "state": state, "checkpoint": ckpt[name], "range": [lo, hi],
                                "rows": int(rows), "batch_limit": limit}
        finally:
            engine.dispose()

        from controlplane.upgrade.backfill import run_backfills

        first_after: dict[str, int] = {}

        def on_batch(bf, after, limit, result):
            first_after.setdefault(bf.name, after)

        engine = _engine(url)
        try:
            t1 = time.perf_counter()
            f = run_backfills(engine, B.backfills(), budget=(args.budget_ms / 1000) if args.budget_ms else None,
                              on_batch=on_batch)
            resume_seconds = time.perf_counter() - t1
            with engine.connect() as c:
                done_after = sum(B.rows_done(c, bf) for bf in specs.values())
        finally:
            engine.dispose()
        resumed = sum(b["rows_done"] for b in f["backfills"])
        started_at_checkpoint = all(first_after.get(n) == ckpt[n] for n in specs if ckpt[n] is not None and pending[n])
        out = {"killed_after_seconds": round(killed_after, 2), "kill_fraction": round(fraction, 3),
               "rows_total": sum(done.values()) + sum(pending.values()),
               "committed_at_kill": sum(done.values()), "pending_at_kill": sum(pending.values()),
               "reported_by_killed_run": reported[0], "inflight": inflight, "checkpoints": ckpt,
               "resumed_rows": resumed, "resume_seconds": round(resume_seconds, 2),
               "resume_started_at_checkpoint": started_at_checkpoint, "rows_done_after_resume": done_after,
               # rows the killed run had filled that its kill threw away: the in-flight batch, and nothing else
               "lost_rows": (reported[0] - sum(done.values())
                             + (inflight["rows"] if inflight["state"] == "running" else 0))}
        out["at_most_one_batch"] = (started_at_checkpoint and resumed == out["pending_at_kill"]
                                    and out["lost_rows"] == inflight["rows"] <= inflight["batch_limit"]
                                    and done_after == out["rows_total"])
        out.update(check_done(url, None))
        return out
    finally:
        site.drop(url)


def run_backend(backend: str, args, work: Path, rng: random.Random) -> dict:
    lines = args.order_lines or DEFAULT_LINES[backend]
    site = (SqliteSite(lines, Path(args.cache), work) if backend == "sqlite"
            else PgSite(lines, args.pg_url, args.template_name))
    try:
        info = site.ensure()
        fig: dict = {"backend": backend, "order_lines": info["sales_order_lines"], "orders": info["sales_orders"],
                     "database_bytes": info.get("bytes"), "generate_seconds": info.get("generate_seconds")}
        budget = (args.budget_ms / 1000) if args.budget_ms else None
        log(f"{backend}: staged backfill ({info['sales_order_lines']:,} lines, {info['sales_orders']:,} orders)")
        fig["staged"] = run_with_writer(site, "staged", args, work, lambda url: staged(url, budget))
        log(f"  {fig['staged']['rows']:,} rows in {fig['staged']['seconds']} s, writer max "
            f"{fig['staged']['writer'].get('max_ms')} ms")
        if not args.skip_naive:
            log(f"{backend}: naive one-transaction backfill")
            fig["naive"] = run_with_writer(site, "naive", args, work, naive)
            log(f"  {fig['naive']['rows']:,} rows in {fig['naive']['seconds']} s, writer max "
                f"{fig['naive']['writer'].get('max_ms')} ms")
        if not args.skip_resume:
            log(f"{backend}: kill the staged backfill at a random moment, then resume")
            fig["resume"] = resume(site, args, rng, fig["staged"]["rows"])
        fig["targets"] = targets(backend, fig)
        return fig
    except Exception as exc:  # noqa: BLE001 - one backend failing must not hide the other's figures
        import traceback

        traceback.print_exc()
        return {"backend": backend, "error": f"{type(exc).__name__}: {exc}"}
    finally:
        site.close()


def targets(backend: str, fig: dict) -> list[dict]:
    t = TARGETS[backend]
    s = fig["staged"]
    out = [{"target": f"writer max stall <= {t['max_stall_ms']} ms", "value": s["writer"].get("max_ms"),
            "met": s["writer"].get("max_ms") is not None and s["writer"]["max_ms"] <= t["max_stall_ms"],
            "ratio": round(s["writer"]["max_ms"] / t["max_stall_ms"], 2) if s["writer"].get("max_ms") else None},
           {"target": f"backfill >= {t['rows_per_second']:,} rows/s", "value": s["rows_per_second"],
            "met": s["rows_per_second"] >= t["rows_per_second"],
            "ratio": round(s["rows_per_second"] / t["rows_per_second"], 2)}]
    if "resume" in fig:
        r = fig["resume"]
        out.append({"target": "resume after a kill redoes at most one batch",
                    "value": f"{r['lost_rows']:,} rows <= batch {r['inflight']['batch_limit']:,}",
                    "met": bool(r["at_most_one_batch"]), "ratio": None})
    return out


# ---- the report -------------------------------------------------------------------------------------

def _fmt(v, spec="{:,.0f}") -> str:
    if v is None:
        return "-"
    return spec.format(v) if isinstance(v, (int, float)) else str(v)


def table(fig: dict) -> str:
    out = [f"upgrade backfill bench: {fig['cpus']} CPUs, load average (1, 5, 15 min) at start {fig['load_start']}, "
           f"at end {fig['load_end']}; release 1.0 writers in their own processes: a new order (2 lines) every "
           f"~{fig['writer_interval_ms']:.0f} ms, an edit of a random existing order every "
           f"~{fig['editor_interval_ms']:.0f} ms"]
    for b in fig["backends"]:
        out.append("")
        if "error" in b:
            out.append(f"{b['backend']}: FAILED: {b['error']}")
            continue
        s, n = b["staged"], b.get("naive") or {}
        out.append(f"{b['backend']}: {b['order_lines']:,} order lines, {b['orders']:,} orders "
                   f"({(b['database_bytes'] or 0) / 1e6:,.0f} MB); stall budget {s['budget_ms']} ms")
        out.append(f"{'':<36}{'staged':>12}{'naive':>12}{'staged/naive':>14}")

        def row(label, a, c, spec="{:,.0f}"):
            ratio = f"{a / c:.2f}" if isinstance(a, (int, float)) and isinstance(c, (int, float)) and c else "-"
            out.append(f"{label:<36}{_fmt(a, spec):>12}{_fmt(c, spec):>12}{ratio:>14}")

        row("backfill duration (s)", s["seconds"], n.get("seconds"), "{:.2f}")
        row("rows filled", s["rows"], n.get("rows"))
        row("backfill rows/s", s["rows_per_second"], n.get("rows_per_second"))
        for who, label in (("writer", "writer (new orders)"), ("editor", "editor (edits old orders)")):
            sw, nw = s.get(who), n.get(who) or {}
            if sw is None:
                continue
            sb, nb = s[who + "_baseline"], n.get(who + "_baseline") or {}
            out.append(f"{label}:")
            row("  transactions during the backfill", sw.get("count"), nw.get("count"))
            row("  median (ms)", sw.get("median_ms"), nw.get("median_ms"), "{:.2f}")
            row("  p99 (ms)", sw.get("p99_ms"), nw.get("p99_ms"), "{:.1f}")
            row("  max stall (ms)", sw.get("max_ms"), nw.get("max_ms"), "{:.1f}")
            row("  failed transactions", sw.get("failed"), nw.get("failed"))
            row("  baseline alone: median (ms)", sb.get("median_ms"), nb.get("median_ms"), "{:.2f}")
            row("  baseline alone: p99 / max (ms)",
                f"{_fmt(sb.get('p99_ms'), '{:.1f}')} / {_fmt(sb.get('max_ms'), '{:.1f}')}",
                f"{_fmt(nb.get('p99_ms'), '{:.1f}')} / {_fmt(nb.get('max_ms'), '{:.1f}')}" if nb else None)
            if sw.get("errors") or nw.get("errors"):
                out.append(f"  errors: staged {sw.get('errors')} naive {nw.get('errors')}")
        out.append("checks:")
        row("  rows pending after", s["pending_after"], n.get("pending_after"))
        row("  new orders committed / found", f"{s['writer_committed']}/{s['writer_orders_found']}",
            f"{n['writer_committed']}/{n['writer_orders_found']}" if n else None)
        if "editor_committed" in s:
            row("  edits committed / found", f"{s['editor_committed']}/{s['editor_edits_found']}",
                f"{n['editor_committed']}/{n['editor_edits_found']}" if n else None)
        c, k = s.get("canary") or {}, s.get("controller") or {}
        out.append(f"staged: {s['batches']:,} batches, each holding its locks median {k.get('batch_ms_median')} ms, "
                   f"p99 {k.get('batch_ms_p99')} ms, max {k.get('batch_ms_max')} ms; final batch "
                   f"{s['final_batch']:,} rows, pause {s['final_pause_ms']} ms; {k.get('shrinks', 0)} shrinks, "
                   f"{k.get('lock_retries', 0)} lock retries"
                   + (f"; WAL checkpoints median {k['checkpoint_ms_median']} ms, max {k['checkpoint_ms_max']} ms"
                      if k.get("checkpoint_ms_median") is not None else ""))
        out.append(f"        canary writer (in the controller): {c.get('samples', 0)} samples, "
                   f"median {c.get('median_ms')} ms, "
                   f"p99 {c.get('p99_ms')} ms, max {c.get('max_ms')} ms")
        if "resume" in b:
            r = b["resume"]
            i = r["inflight"]
            out.append(f"resume: SIGKILL {r['killed_after_seconds']} s into the staged backfill "
                       f"({r['reported_by_killed_run']:,} rows reported); at the kill {r['committed_at_kill']:,} rows "
                       f"committed, {r['pending_at_kill']:,} pending")
            if i["range"] is None:
                out.append(f"        in flight: nothing ({i['backfill']}: the last batch had committed)")
            else:
                out.append(f"        in flight: {i['backfill']} keys ({i['range'][0]}, {i['range'][1]}] = "
                           f"{i['rows']:,} rows, batch limit {i['batch_limit']:,} ({i['state']}); checkpoint "
                           f"{i['checkpoint']}")
            out.append("        resumed run: started at the checkpoints: "
                       f"{'yes' if r['resume_started_at_checkpoint'] else 'NO'}; "
                       f"filled {r['resumed_rows']:,} rows (pending at the kill: {r['pending_at_kill']:,}) in "
                       f"{r['resume_seconds']} s; rows done after: {r['rows_done_after_resume']:,} of "
                       f"{r['rows_total']:,}; redone work: {r['lost_rows']:,} rows (the in-flight batch); "
                       f"pending after: {r['pending_after']}")
        for t in b["targets"]:
            ratio = f" (x{t['ratio']:.2f} of target)" if t["ratio"] is not None else ""
            out.append(f"  target {t['target']:<44} {_fmt(t['value'], '{:,}'):>14}  "
                       f"{'met' if t['met'] else 'MISSED'}{ratio}")
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    p.add_argument("--order-lines", type=int, default=None,
                   help="sales order lines per backend (default 2,000,000 SQLite, 5,000,000 PostgreSQL)")
    p.add_argument("--budget-ms", type=float, default=None,
                   help="the controller's writer-stall budget (default: erpctl's, 100 ms SQLite, 500 ms PostgreSQL)")
    p.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "erpctl-bench-cache"),
                   help="where generated SQLite databases are kept between runs")
    p.add_argument("--work", default=None, help="parent of the temporary work directory")
    p.add_argument("--pg-url", default=DEFAULT_PG_URL, help="PostgreSQL admin URL (default $ERPCTL_PG_URL or local)")
    p.add_argument("--template-name", default=None,
                   help="PostgreSQL template database of the generated 1.0 data (default erp_bench_1_0_<lines>; "
                        "give each of two runs sharing a server its own, or let them share a ready one); the "
                        "working copies always get unique names")
    p.add_argument("--writer-interval", type=float, default=0.01,
                   help="mean pause between the writer's transactions, seconds (jittered +-50 %%)")
    p.add_argument("--editor-interval", type=float, default=0.05,
                   help="mean pause between the editor's transactions (edits of existing orders), seconds; "
                        "0: no editor")
    p.add_argument("--baseline", type=float, default=3.0, help="seconds of the writer alone before each backfill")
    p.add_argument("--skip-naive", action="store_true", help="skip the one-transaction migration")
    p.add_argument("--skip-resume", action="store_true", help="skip the kill-and-resume run")
    p.add_argument("--seed", type=int, default=None, help="random seed of the kill moment")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = p.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.WARNING)
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    fig = {"cpus": os.cpu_count(), "load_start": loadavg(), "seed": seed,
           "writer_interval_ms": args.writer_interval * 1000, "editor_interval_ms": args.editor_interval * 1000,
           "backends": []}
    log(f"load average {fig['load_start']}, seed {seed}")
    work = Path(tempfile.mkdtemp(prefix="erpctl-bench-upgrade-", dir=args.work))
    try:
        for backend in (("sqlite", "postgresql") if args.backend == "both" else (args.backend,)):
            fig["backends"].append(run_backend(backend, args, work, rng))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    fig["load_end"] = loadavg()
    print(json.dumps(fig, indent=1, default=str) if args.json else table(fig))
    return 1 if any("error" in b for b in fig["backends"]) else 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_writer":
        writer_main(sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5]), sys.argv[6], sys.argv[7])
    elif len(sys.argv) > 1 and sys.argv[1] == "_staged":
        staged_child_main(sys.argv[2], float(sys.argv[3]) / 1000)
    else:
        sys.exit(main())
