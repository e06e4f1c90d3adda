"""Running a release's backfills in key-range batches under a write-stall budget.

Each batch and its checkpoint are one transaction (erp_core.backfill.run_batch writes the checkpoint),
so a kill redoes at most the batch in flight. A backfill stops at the largest key its table had when it
started: rows inserted after the expand step are filled by its compatibility triggers, so chasing the
keys that writers keep adding would only add batches with nothing to fill (and, with a busy writer,
never end).

How long a writer of the ERP waits is set by two things the controller chooses:

- how long a batch holds its locks (SQLite: the database's write lock; PostgreSQL: the row locks of
  the batch). Batches are sized from the measured rate to take a share of the budget: 45 % on
  PostgreSQL, 20 % on SQLite. On SQLite a stall runs on to the waiting writer's next retry (below),
  a batch can take 2-3 times its usual length on a busy machine, and a writer that misses its turn
  once waits through a second batch: with 20 ms batches even that (50 ms + a 15 ms pause + 20 ms)
  ends within a 100 ms budget. Each backfill starts from the smallest batch: its rows may cost far
  more than the previous table's (a prepare step, correlated subqueries).
- SQLite only: whether a waiting writer gets in after the batch. A writer waiting for SQLite's write
  lock does not queue; its busy handler retries after sleeping 1, 2, 5, 10, 15, 20, 25, 25, 25, 50,
  50, 100 ms. When a batch commits, that writer is asleep for up to the gap it is in, and if the next
  batch took the lock before it woke it would wait through that batch too. So the pause after a
  batch outlasts the busy handler's gap at the batch's duration (plus a margin for another writer's
  transaction and the scheduler), stretched at random so batches and retries do not fall into step.
  The backfill's own connection has a short busy timeout and retries itself every millisecond or so
  (it never sleeps 25 ms behind a writer's 1 ms transaction), and checkpoints the WAL itself during
  the pause: a checkpoint holds no write lock, and left to SQLite's auto-checkpoint it would run in
  the COMMIT of whichever connection crosses the threshold, often the next writer's.

PostgreSQL wakes lock waiters in order at commit, so its pause is short; a batch waits at most the
budget for a row lock a writer holds (lock_timeout) and is then retried, so it never holds its own
locks for long behind a slow writer.

A canary writer measures what a writer waits for while batches run (SQLite: the write lock;
PostgreSQL: a row lock at the start of the batch in flight). When it waits more than 80 % of the
budget the controller halves the batch and aims lower (and, on SQLite, widens the pause margin); it
returns to its defaults while the canary waits less than 60 % of the budget.
"""

from __future__ import annotations

import random
import statistics
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine

from erp_core import ops

from ..faults import failpoint

DEFAULT_BUDGET_SECONDS = {"sqlite": 0.100, "postgresql": 0.500}

# SQLite's default busy handler (sqliteDefaultBusyCallback): after the n-th failed try it sleeps
# SQLITE_BUSY_DELAYS_MS[n] milliseconds (the last value thereafter) and tries again.
SQLITE_BUSY_DELAYS_MS = (1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50, 100)
SQLITE_OWN_BUSY_TIMEOUT_MS = 2   # the backfill's connection gives up quickly and retries by itself
LOCK_RETRY_DEADLINE = 30.0       # the ERP's own busy timeout: the longest a batch keeps retrying


def sqlite_retry_gap(waited: float) -> float:
    """Seconds a writer that has waited up to `waited` seconds for SQLite's write lock may still sleep
    before its next try: the busy handler's gap that contains `waited`."""
    t = 0.0
    for d in SQLITE_BUSY_DELAYS_MS:
        if waited * 1000 <= t + d:
            return d / 1000
        t += d
    return SQLITE_BUSY_DELAYS_MS[-1] / 1000


@dataclass
class Controller:
    """Batch size and pause from the measured batch durations and the canary's recent waits.

    The next batch is sized to hold its locks for `share` of the budget at the rate measured so far
    (the lower of the last batch's and the running average), growing at most twofold a batch from
    `min_batch` at the start of each backfill. The pause after a batch is `min_pause` on PostgreSQL;
    on SQLite it is the busy handler's retry gap at that batch's duration plus `margin`.
    `next_pause` stretches it at random by up to `jitter`."""

    budget: float
    sqlite: bool = False
    batch: int = 2_000
    min_batch: int = 100
    max_batch: int = 200_000
    batch_share: float = 0.45   # the share of the budget a batch is sized to take
    min_share: float = 0.05
    margin: float = 0.004       # SQLite: added to the retry gap
    min_pause: float = 0.002
    jitter: float = 0.25
    share: float = 0.0          # the share aimed at now (batch_share, lowered while the canary waits)
    pause: float = 0.0          # the pause after the last batch (before jitter)
    extra_margin: float = 0.0   # SQLite: margin added while the canary waits
    rate: float = 0.0           # running average of keys per second
    shrinks: int = 0
    recent: deque = field(default_factory=lambda: deque(maxlen=20))

    @classmethod
    def for_dialect(cls, dialect: str, budget: float, **kw) -> "Controller":
        if dialect == "sqlite":
            return cls(budget=budget, sqlite=True, batch_share=0.20, **kw)
        return cls(budget=budget, **kw)

    def __post_init__(self):
        self.share = self.share or self.batch_share
        self.pause = max(self.pause, self.min_pause)

    def start_backfill(self) -> None:
        """A new backfill: its rows may cost far more than the last one's (another table, a prepare step,
        correlated subqueries), so it starts from the smallest batch and a new rate."""
        self.batch = self.min_batch
        self.rate = 0.0

    def pause_after(self, seconds: float) -> float:
        """The pause after a batch that held its locks for `seconds` (before jitter)."""
        if self.sqlite:
            return max(self.min_pause, sqlite_retry_gap(seconds) + self.margin + self.extra_margin)
        return self.min_pause

    def next_pause(self, rng=random) -> float:
        return self.pause * (1 + rng.uniform(0, self.jitter))

    def update(self, rows: int, seconds: float, canary_waits: list[float]) -> None:
        """After a batch: `rows` keys covered in `seconds`, and what the canary waited meanwhile."""
        self.recent.extend(canary_waits)
        worst = max(self.recent, default=0.0)
        if rows > 0 and seconds > 0:
            rate = rows / seconds
            self.rate = rate if not self.rate else 0.7 * self.rate + 0.3 * rate
            fit = int(min(rate, self.rate) * self.budget * self.share)
            self.batch = max(self.min_batch, min(self.max_batch, fit, self.batch * 2))
        self.pause = self.pause_after(seconds)
        if worst > 0.8 * self.budget:
            # a writer waited too long: smaller batches now, aim lower, and (SQLite) a longer pause
            self.shrinks += 1
            self.batch = max(self.min_batch, self.batch // 2)
            self.share = max(self.min_share, self.share * 0.7)
            if self.sqlite:
                self.extra_margin = min(self.budget / 4, self.extra_margin + 0.005)
                self.pause = self.pause_after(seconds)
            else:
                self.pause = min(self.budget, max(self.pause * 1.5, self.min_pause, 0.005))
            self.recent.clear()
        elif worst < 0.6 * self.budget:
            self.share = min(self.batch_share, self.share * 1.05)
            self.extra_margin = max(0.0, self.extra_margin - 0.0005)


class Canary:
    """A writer that keeps taking a write lock and records how long it waited for it."""

    def __init__(self, engine: Engine, interval: float = 0.02):
        self.engine = engine
        self.interval = interval
        self.sqlite = engine.dialect.name == "sqlite"
        self.probe: tuple[str, str, int] | None = None  # PostgreSQL: (table, key, first key of the batch)
        self._waits: list[float] = []
        self._all: list[float] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="upgrade-canary")

    def start(self) -> "Canary":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def take(self) -> list[float]:
        with self._lock:
            out, self._waits = self._waits, []
        return out

    def summary(self) -> dict:
        with self._lock:
            w = sorted(self._all)
        if not w:
            return {"samples": 0}
        return {"samples": len(w), "max_ms": round(w[-1] * 1000, 1),
                "p99_ms": round(w[min(len(w) - 1, int(len(w) * 0.99))] * 1000, 1),
                "median_ms": round(statistics.median(w) * 1000, 2)}

    def _run(self) -> None:
        raw = self.engine.raw_connection()  # the driver's own transactions, no ORM autobegin
        try:
            cur = raw.cursor()
            if not self.sqlite:
                cur.execute("SET lock_timeout = '10s'")
                raw.commit()
            while not self._stop.wait(self.interval * random.uniform(0.5, 1.5)):
                t0 = time.perf_counter()
                try:
                    if self.sqlite:
                        cur.execute("BEGIN IMMEDIATE")
                    elif self.probe:
                        table, key, after = self.probe
                        cur.execute(f'SELECT 1 FROM "{table}" WHERE "{key}" > %s ORDER BY "{key}" '
                                    "LIMIT 1 FOR UPDATE", (after,))
                    else:
                        cur.execute("SELECT 1")
                except Exception:  # noqa: BLE001 - a sample lost to a timeout still counts as a wait
                    pass
                waited = time.perf_counter() - t0
                try:
                    if self.sqlite:
                        cur.execute("ROLLBACK")
                    else:
                        raw.rollback()
                except Exception:  # noqa: BLE001 - nothing was begun
                    pass
                with self._lock:
                    self._waits.append(waited)
                    self._all.append(waited)
        finally:
            raw.close()


@dataclass
class Progress:
    name: str
    rows_done: int = 0
    rows_total: int = 0
    batches: int = 0
    seconds: float = 0.0
    last_key: int | None = None
    batch: int = 0
    pause_ms: float = 0.0

    @property
    def rows_per_second(self) -> float:
        return self.rows_done / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict:
        eta = ((self.rows_total - self.rows_done) / self.rows_per_second
               if self.rows_per_second and self.rows_total > self.rows_done else 0.0)
        return {"name": self.name, "rows_done": self.rows_done, "rows_total": self.rows_total,
                "batches": self.batches, "seconds": round(self.seconds, 2),
                "rows_per_second": round(self.rows_per_second), "eta_seconds": round(eta, 1),
                "last_key": self.last_key, "batch": self.batch, "pause_ms": round(self.pause_ms, 1)}


class _Totals:
    """Counts the pending rows of every backfill in a read transaction of its own, beside the batches
    (a full count of a large table takes a while; writers are not held up by it). A count taken while
    its backfill already runs adds the rows that backfill had filled when the count began."""

    def __init__(self, engine: Engine, backfills: list, progress: dict[str, Progress]):
        self.engine, self.backfills, self.progress = engine, backfills, progress
        self.totals: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="upgrade-backfill-totals")
        self._thread.start()

    def _run(self) -> None:
        try:
            with self.engine.connect() as conn:
                for bf in self.backfills:
                    if self._stop.is_set():
                        return
                    with conn.begin():
                        p = self.progress.get(bf.name)
                        done = p.rows_done if p else 0
                        self.totals[bf.name] = done + ops.remaining(conn, bf)
        except Exception:  # noqa: BLE001 - totals only feed the ETA
            pass

    def get(self, name: str) -> int | None:
        return self.totals.get(name)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)


class _SqliteTuning:
    """The backfill connection's short busy timeout and its own WAL checkpoints, undone when it goes
    back to the engine's pool."""

    def __init__(self, conn):
        self.raw = conn.connection.driver_connection
        self.saved = {p: self.raw.execute(f"PRAGMA {p}").fetchone()[0] for p in ("busy_timeout", "wal_autocheckpoint")}
        self.raw.execute(f"PRAGMA busy_timeout = {SQLITE_OWN_BUSY_TIMEOUT_MS}")
        self.raw.execute("PRAGMA wal_autocheckpoint = 0")
        self.seconds: list[float] = []

    def checkpoint(self) -> None:
        t0 = time.perf_counter()
        try:
            self.raw.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except Exception:  # noqa: BLE001 - a checkpoint that cannot run now runs after the next batch
            return
        self.seconds.append(time.perf_counter() - t0)

    def restore(self) -> None:
        for pragma, value in self.saved.items():
            self.raw.execute(f"PRAGMA {pragma} = {int(value)}")


def _lock_busy(exc: Exception, sqlite: bool) -> bool:
    """A batch that could not get its lock in time (and changed nothing): retry it."""
    orig = getattr(exc, "orig", exc)
    if sqlite:
        text = str(orig).lower()
        return "database is locked" in text or "database is busy" in text
    return getattr(orig, "sqlstate", None) == "55P03"  # lock_not_available (lock_timeout)


def _ms(values: list[float], q: float | None = None) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return round((s[-1] if q is None else s[min(len(s) - 1, int(len(s) * q))]) * 1000, 1)


def run_backfills(engine: Engine, backfills: list, *, budget: float | None = None,
                  on_progress: Callable[[list[Progress], dict], None] | None = None,
                  canary: bool = True,
                  on_batch: Callable[[object, int, int, object], None] | None = None) -> dict:
    """Run every backfill to completion from its checkpoint. Returns figures for the record.

    on_batch(backfill, after_key, limit, result), if given, is called in each batch's transaction:
    before run_batch with result None, and after it, before the commit, with its BatchResult."""
    dialect = engine.dialect.name
    budget = budget or DEFAULT_BUDGET_SECONDS.get(dialect, 0.5)
    run = _Run(engine, Controller.for_dialect(dialect, budget), budget, on_progress, on_batch)
    run.can = Canary(engine).start() if canary else None
    totals = run.totals = _Totals(engine, backfills, run.by_name)
    try:
        with engine.connect().execution_options(erp_write=True) as conn, engine.connect() as reader:
            run.conn = conn
            run.tuning = _SqliteTuning(conn) if run.sqlite else None
            try:
                for bf in backfills:
                    run.backfill(bf, reader)
            finally:
                if run.tuning is not None:
                    run.tuning.checkpoint()
                    run.tuning.restore()
    finally:
        if run.can is not None:
            run.can.stop()
        totals.close()
    for p in run.progress:
        p.rows_total = max(totals.get(p.name) or 0, p.rows_done)
    figures = run.figures()
    if on_progress:
        on_progress(run.progress, figures["canary"] or {})
    return figures


class _Run:
    """One run of run_backfills: the backfills one after the other, batch by batch, on one
    connection, paced by the controller."""

    def __init__(self, engine: Engine, ctl: Controller, budget: float, on_progress, on_batch):
        self.sqlite = engine.dialect.name == "sqlite"
        self.ctl = ctl
        self.budget = budget
        self.on_progress = on_progress
        self.on_batch = on_batch
        self.rng = random.Random()
        self.can: Canary | None = None
        self.totals: _Totals | None = None
        self.conn = None
        self.tuning: _SqliteTuning | None = None
        self.progress: list[Progress] = []
        self.by_name: dict[str, Progress] = {}
        self.held: list[float] = []          # how long each batch held its locks
        self.lock_retries = 0
        self.t_start = time.perf_counter()
        self.last_report = 0.0

    def backfill(self, bf, reader) -> None:
        p = Progress(bf.name)
        self.progress.append(p)
        self.by_name[bf.name] = p
        # a read transaction: on SQLite, key_bounds scans the table (MIN and MAX in one
        # statement), which under the write lock would stall every writer meanwhile
        with reader.begin():
            after = ops.checkpoint(reader, bf)
            bounds = ops.key_bounds(reader, bf)
        if bounds is None:
            return
        if after is None:
            after = bounds[0] - 1
        stop_at = bounds[1]  # later keys were inserted after the expand: the triggers filled them
        p.last_key = after
        self.ctl.start_backfill()
        locked_since = None
        while after < stop_at:
            if self.can is not None and not self.sqlite:
                self.can.probe = (bf.table, bf.key, after)
            limit = self.ctl.batch
            t0 = time.perf_counter()
            try:
                result = self._batch(bf, after, limit)
            except sa_exc.OperationalError as exc:
                # a writer holds the lock: nothing of the batch was kept; try it again soon
                locked_since = locked_since or t0
                if not _lock_busy(exc, self.sqlite) or t0 - locked_since > LOCK_RETRY_DEADLINE:
                    raise
                self.lock_retries += 1
                time.sleep(self.rng.uniform(0.0005, 0.0015) if self.sqlite else self.rng.uniform(0.005, 0.02))
                continue
            took = time.perf_counter() - t0
            locked_since = None
            if result.last_key is None:
                break
            after = result.last_key
            self._done(p, bf, limit if after < stop_at else result.rows, result, took)

    def _batch(self, bf, after: int, limit: int):
        """One batch and its checkpoint, in one transaction."""
        conn, on_batch = self.conn, self.on_batch
        with conn.begin():
            if not self.sqlite:
                conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{max(1, int(self.budget * 1000))}ms'")
            if on_batch:
                on_batch(bf, after, limit, None)
            result = ops.run_batch(conn, bf, after, limit)
            if on_batch:
                on_batch(bf, after, limit, result)
            failpoint("upgrade.backfill.batch")
        return result

    def _done(self, p: Progress, bf, rows_asked: int, result, took: float) -> None:
        """A batch committed: count it, let the controller adapt, then pause."""
        ctl, can = self.ctl, self.can
        self.held.append(took)
        p.rows_done += result.rows
        p.batches += 1
        p.seconds += took
        p.last_key = result.last_key
        p.rows_total = max(self.totals.get(bf.name) or 0, p.rows_done)
        ctl.update(rows_asked, took, can.take() if can else [])
        p.batch, p.pause_ms = ctl.batch, ctl.pause * 1000
        now = time.perf_counter()
        if self.tuning is not None:
            self.tuning.checkpoint()  # no write lock: a waiting writer gets in meanwhile
        if self.on_progress and now - self.last_report >= 0.5:
            self.last_report = now
            self.on_progress(self.progress, can.summary() if can else {})
        rest = ctl.next_pause(self.rng) - (time.perf_counter() - now)
        if rest > 0:
            time.sleep(rest)
        p.seconds += time.perf_counter() - now

    def figures(self) -> dict:
        ctl, held, tuning = self.ctl, self.held, self.tuning
        progress = self.progress
        figures = {"backfills": [p.as_dict() for p in progress], "budget_ms": round(self.budget * 1000),
                   "seconds": round(time.perf_counter() - self.t_start, 2),
                   "rows": sum(p.rows_done for p in progress),
                   "canary": self.can.summary() if self.can else None,
                   "controller": {"batches": len(held), "final_batch": ctl.batch,
                                  "final_pause_ms": round(ctl.pause * 1000, 1),
                                  "share": round(ctl.share, 3), "shrinks": ctl.shrinks,
                                  "lock_retries": self.lock_retries,
                                  "batch_ms_median": _ms(held, 0.5), "batch_ms_p99": _ms(held, 0.99),
                                  "batch_ms_max": _ms(held),
                                  "checkpoint_ms_median": _ms(tuning.seconds, 0.5) if tuning else None,
                                  "checkpoint_ms_max": _ms(tuning.seconds) if tuning else None}}
        figures["rows_per_second"] = round(figures["rows"] / figures["seconds"]) if figures["seconds"] else 0
        return figures
