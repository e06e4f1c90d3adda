"""Running a release's backfills in key-range batches under a write-stall budget.

Each batch and its checkpoint are one transaction (erp_core.backfill.run_batch writes the checkpoint),
so a kill redoes at most the batch in flight. A canary writer measures what a writer of the ERP waits
for while batches run; the controller sizes batches and the pauses between them to keep that wait
within the budget, and grows batches while there is room.
"""

from __future__ import annotations

import random
import statistics
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

from sqlalchemy.engine import Engine

from ..faults import failpoint

DEFAULT_BUDGET_SECONDS = {"sqlite": 0.100, "postgresql": 0.500}


@dataclass
class Controller:
    """Batch size and pause from the last batch's duration and the canary's recent waits.

    A batch holds its locks for its whole duration, so a batch is sized to take a fraction of the
    budget; the pause after it lets waiting writers in (SQLite's busy handler retries at growing
    intervals, up to 25 ms in the first 100 ms, so the pause must outlast a retry interval)."""

    budget: float
    batch: int = 2_000
    min_batch: int = 100
    max_batch: int = 100_000
    pause: float = 0.0
    min_pause: float = 0.0
    batch_share: float = 0.45
    recent: deque = field(default_factory=lambda: deque(maxlen=20))

    def __post_init__(self):
        self.pause = max(self.pause, self.min_pause)

    def update(self, rows: int, seconds: float, canary_waits: list[float]) -> None:
        self.recent.extend(canary_waits)
        worst = max(self.recent, default=0.0)
        if rows > 0 and seconds > 0:
            fit = int(rows / seconds * self.budget * self.batch_share)
            # move towards what fits the budget, at most doubling at a time
            self.batch = max(self.min_batch, min(self.max_batch, fit, self.batch * 2))
        if worst > 0.8 * self.budget:
            self.batch = max(self.min_batch, self.batch // 2)
            self.pause = min(self.budget, max(self.pause * 1.5, self.min_pause, 0.005))
            self.recent.clear()
        elif worst < 0.4 * self.budget:
            self.pause = max(self.min_pause, self.pause * 0.9)


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


def _write_connection(engine: Engine):
    return engine.connect().execution_options(erp_write=True)


def run_backfills(engine: Engine, backfills: list, *, budget: float | None = None,
                  on_progress: Callable[[list[Progress], dict], None] | None = None,
                  canary: bool = True) -> dict:
    """Run every backfill to completion from its checkpoint. Returns figures for the record."""
    from erp_core import backfill as erp_backfill

    dialect = engine.dialect.name
    budget = budget or DEFAULT_BUDGET_SECONDS.get(dialect, 0.5)
    ctl = Controller(budget=budget, min_pause=0.025 if dialect == "sqlite" else 0.002)
    can = Canary(engine).start() if canary else None
    progress: list[Progress] = []
    t_start = time.perf_counter()
    last_report = 0.0
    try:
        with _write_connection(engine) as conn:
            for bf in backfills:
                p = Progress(bf.name)
                progress.append(p)
                with conn.begin():
                    after = erp_backfill.checkpoint(conn, bf)
                    bounds = erp_backfill.key_bounds(conn, bf)
                    p.rows_total = erp_backfill.remaining(conn, bf)
                if bounds is None:
                    continue
                if after is None:
                    after = bounds[0] - 1
                p.last_key = after
                while True:
                    if can is not None and dialect != "sqlite":
                        can.probe = (bf.table, bf.key, after)
                    t0 = time.perf_counter()
                    with conn.begin():
                        result = erp_backfill.run_batch(conn, bf, after, ctl.batch)
                        failpoint("upgrade.backfill.batch")
                    took = time.perf_counter() - t0
                    if result.last_key is None:
                        break
                    after = result.last_key
                    p.rows_done += result.rows
                    p.batches += 1
                    p.seconds += took
                    p.last_key = after
                    ctl.update(result.rows, took, can.take() if can else [])
                    p.batch, p.pause_ms = ctl.batch, ctl.pause * 1000
                    now = time.perf_counter()
                    if on_progress and now - last_report >= 0.5:
                        last_report = now
                        on_progress(progress, can.summary() if can else {})
                    if ctl.pause:
                        time.sleep(ctl.pause * random.uniform(0.8, 1.2))
                    p.seconds += time.perf_counter() - now
    finally:
        if can is not None:
            can.stop()
    figures = {"backfills": [p.as_dict() for p in progress], "budget_ms": round(budget * 1000),
               "seconds": round(time.perf_counter() - t_start, 2),
               "rows": sum(p.rows_done for p in progress),
               "canary": can.summary() if can else None}
    figures["rows_per_second"] = round(figures["rows"] / figures["seconds"]) if figures["seconds"] else 0
    if on_progress:
        on_progress(progress, figures["canary"] or {})
    return figures
