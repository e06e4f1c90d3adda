"""Prometheus metrics of the ERP (served at /metrics).

Instruments, updated as requests and queries happen:

    erp_http_requests_total{method,route,status}      counter; route is the URL rule's template
    erp_http_request_duration_seconds{method,route}   histogram
    erp_http_exceptions_total{route}                   counter of unexpected (unhandled) errors
    erp_db_query_duration_seconds                      histogram of every statement sent to the database
    erp_db_pool_connections{state="in_use"|"idle"}    gauge of the connection pool

Computed from the database when /metrics is scraped (BusinessCollector):

    erp_database_up, erp_schema_supported, erp_build_info{version,schema_revision} (always 1),
    erp_maintenance_mode, erp_low_stock_products; and the business figures erp_sales_orders{state},
    erp_sales_orders_today, erp_receivables_open_amount only when a metrics token is set (Settings.metrics_token,
    ERP_METRICS_TOKEN): /metrics then requires 'Authorization: Bearer <token>'. Without a token /metrics
    tells nobody the business's figures.

Label values are bounded: the route is the rule template ("/api/v1/sales-orders/<int:order_id>",
"unmatched" for a 404 on no route), the method one of a fixed set, the status an HTTP code.

Costs are kept small (bench/metrics.py measures them): requests are timed by a WSGI middleware
around Flask, statements by the dialect's do_execute events (their durations added to the
histogram once per request), the pool is read when scraped, and no `_created` series are made.

Multi-worker servers: set PROMETHEUS_MULTIPROC_DIR (an empty directory, wiped before the server
starts) in the environment of every worker before it starts. prometheus-client then keeps the
instruments in per-process files there and /metrics, whichever worker answers it, sums the
counters and histograms of all workers (dead ones included) and the pool gauges of the live ones.
The server must call `prometheus_client.multiprocess.mark_process_dead(pid)` when a worker exits
(gunicorn: a `child_exit` hook). Business gauges are read from the database at scrape time, so
they need nothing of the kind.
"""

from __future__ import annotations

import bisect
import datetime as dt
import glob
import json
import mmap
import os
import struct
import threading
import time

from flask import Flask, request
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import event, func, select
from sqlalchemy.pool import QueuePool

from . import __version__
from .db import schema_status
from .domain.states import SALES_ORDER
from .models import Invoice, ReorderRule, SalesOrder, StockLevel
from .services import maintenance

# No `<name>_created` series beside every counter and histogram: they double the series (and the
# render time) for a timestamp Prometheus does not need from the text format.
disable_created_metrics()

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
DB_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
UNMATCHED = "unmatched"


def multiprocess_dir() -> str | None:
    """The directory of multiprocess mode, or None in single-process mode."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


POOL_HELP = "Database connections of the pool by state"


class PoolCollector:
    """erp_db_pool_connections read from the pool when scraped (single-process mode: nothing to
    do per request). Pools without a queue of idle connections report the ones in use."""

    def __init__(self, engine):
        self.pool = engine.pool
        self._in_use = 0
        if not isinstance(self.pool, QueuePool):
            event.listen(engine, "checkout", self._out)
            event.listen(engine, "checkin", self._in)

    def _out(self, *_):
        self._in_use += 1

    def _in(self, *_):
        self._in_use -= 1

    def collect(self):
        g = GaugeMetricFamily("erp_db_pool_connections", POOL_HELP, labels=["state"])
        if isinstance(self.pool, QueuePool):
            g.add_metric(["in_use"], self.pool.checkedout())
            g.add_metric(["idle"], self.pool.checkedin())
        else:
            g.add_metric(["in_use"], self._in_use)
            g.add_metric(["idle"], 0)
        yield g


class Instruments:
    """The request and database instruments. In single-process mode each app has its own (in its
    own registry); in multiprocess mode they are per process and written to the shared directory."""

    def __init__(self, registry: CollectorRegistry | None):
        self.registry = registry
        self.multiprocess = registry is None
        self.requests = Counter("erp_http_requests_total", "HTTP requests by method, route template and status",
                                ["method", "route", "status"], registry=registry)
        self.latency = Histogram("erp_http_request_duration_seconds",
                                 "HTTP request latency by method and route template",
                                 ["method", "route"], buckets=BUCKETS, registry=registry)
        self.exceptions = Counter("erp_http_exceptions_total",
                                  "Requests that ended in an unexpected (unhandled) error, by route template",
                                  ["route"], registry=registry)
        self.db_query = Histogram("erp_db_query_duration_seconds", "Time of each statement sent to the database",
                                  buckets=DB_BUCKETS, registry=registry)
        self.queries = QueryTimer(self.db_query)
        if self.multiprocess:  # single process: PoolCollector reads the pool when scraped
            self.pool = Gauge("erp_db_pool_connections", POOL_HELP, ["state"], registry=None,
                              multiprocess_mode="livesum")
            self.pool_in_use = self.pool.labels("in_use")
            self.pool_idle = self.pool.labels("idle")
        # labels() takes a lock and builds a key; the label sets are few, so keep the children.
        self._request_children: dict = {}

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        children = self._request_children.get(key)
        if children is None:
            children = (self.requests.labels(method, route, str(status)), self.latency.labels(method, route))
            self._request_children[key] = children
        children[0].inc()
        children[1].observe(seconds)


_process_instruments: Instruments | None = None


def _instruments(registry: CollectorRegistry) -> Instruments:
    global _process_instruments
    if multiprocess_dir() is None:
        return Instruments(registry)
    # One set per process: two sets would overwrite each other's values in the process's files.
    if _process_instruments is None:
        os.makedirs(multiprocess_dir(), exist_ok=True)
        _process_instruments = Instruments(None)
    return _process_instruments


def _route() -> str:
    rule = request.url_rule
    return rule.rule if rule is not None else UNMATCHED


REQUEST_KEY = "erp.request"


def _timed(wsgi_app, inst: Instruments):
    """WSGI middleware: the whole of Flask's handling of a request, timed and counted by its route
    template (the request object Flask made, left in the environ, knows the rule it matched)."""
    clock = time.perf_counter
    observe = inst.observe_request
    queries = inst.queries

    def app(environ, start_response):
        t0 = clock()
        status = [500]
        queries.request_started()

        def start(code, headers, exc_info=None):
            status[0] = int(code[:3])
            return start_response(code, headers, exc_info)

        try:
            return wsgi_app(environ, start)
        finally:
            queries.request_ended()
            req = environ.pop(REQUEST_KEY, None)  # and no cycle environ <-> request left behind
            rule = req.url_rule if req is not None else None
            method = environ.get("REQUEST_METHOD", "")
            observe(method if method in METHODS else "OTHER", rule.rule if rule is not None else UNMATCHED,
                    status[0], clock() - t0)

    return app


def record_exception(app: Flask) -> None:
    """Count an unexpected error of the current request (called by the app's last-resort handler)."""
    inst = app.extensions.get("erp_instruments")
    if inst is not None:
        inst.exceptions.labels(_route()).inc()


class QueryTimer:
    """Times every statement sent to the database. While a request runs on a thread, the
    durations wait on that thread and go into the histogram together when the request ends (one
    increment per bucket touched, not two per statement); outside requests, at once."""

    def __init__(self, hist: Histogram):
        self.hist = hist
        self._local = threading.local()
        # The histogram's own values, to add many observations at once; observe() one by one if
        # this prometheus-client version keeps them elsewhere.
        self._bounds = getattr(hist, "_upper_bounds", None)
        self._batch = self._bounds is not None and hasattr(hist, "_buckets") and hasattr(hist, "_sum")

    def request_started(self) -> None:
        self._local.buffer = []

    def request_ended(self) -> None:
        buffer = getattr(self._local, "buffer", None)
        self._local.buffer = None
        if buffer:
            self.add(buffer)

    def add(self, durations: list[float]) -> None:
        if not self._batch:
            for d in durations:
                self.hist.observe(d)
            return
        counts: dict[int, int] = {}
        bounds = self._bounds
        for d in durations:  # the first bucket whose bound is >= d, as observe() picks it
            i = bisect.bisect_left(bounds, d)
            counts[i] = counts.get(i, 0) + 1
        self.hist._sum.inc(sum(durations))
        for i, n in counts.items():
            self.hist._buckets[i].inc(n)


def instrument_engine(engine, inst: Instruments) -> None:
    """Time every statement and follow the pool through SQLAlchemy's events.

    Statements are timed by the dialect's do_execute / do_execute_no_params / do_executemany
    events: one listener runs the dialect's own method between two clock readings (and returns
    True, so SQLAlchemy does not run it again). A before/after_cursor_execute pair costs twice as
    much per statement (bench/metrics.py). The engine's dialect is its own: no other engine is
    touched."""
    clock = time.perf_counter
    timer = inst.queries
    local, hist_observe = timer._local, timer.hist.observe
    dialect = engine.dialect

    def done(t0):
        seconds = clock() - t0
        buffer = getattr(local, "buffer", None)
        if buffer is None:
            hist_observe(seconds)
        else:
            buffer.append(seconds)

    def execute(cursor, statement, parameters, context):
        t0 = clock()
        try:
            dialect.do_execute(cursor, statement, parameters, context)
        finally:
            done(t0)
        return True

    def execute_no_params(cursor, statement, context):
        t0 = clock()
        try:
            dialect.do_execute_no_params(cursor, statement, context)
        finally:
            done(t0)
        return True

    def executemany(cursor, statement, parameters, context):
        t0 = clock()
        try:
            dialect.do_executemany(cursor, statement, parameters, context)
        finally:
            done(t0)
        return True

    event.listen(engine, "do_execute", execute)
    event.listen(engine, "do_execute_no_params", execute_no_params)
    event.listen(engine, "do_executemany", executemany)

    if not inst.multiprocess:
        inst.registry.register(PoolCollector(engine))
        return
    # Multiprocess mode: each process keeps its pool's numbers in its file ("livesum" adds the live ones).
    pool = engine.pool
    if isinstance(pool, QueuePool):
        # The checkin event comes before the connection is back in the queue: count it as returned.
        def update(returning: int):
            inst.pool_in_use.set(pool.checkedout() - returning)
            inst.pool_idle.set(min(pool.checkedin() + returning, pool.size()))

        event.listen(engine, "checkout", lambda *_: update(0))
        event.listen(engine, "checkin", lambda *_: update(1))
        update(0)
    else:  # no queue of idle connections (NullPool, StaticPool...): count the ones in use
        event.listen(engine, "checkout", lambda *_: inst.pool_in_use.inc())
        event.listen(engine, "checkin", lambda *_: inst.pool_in_use.dec())


class BusinessCollector:
    """Gauges read from the database at scrape time (a few cheap aggregate queries)."""

    def __init__(self, db, business: bool = True):
        self.db = db
        self.business = business  # the sales and receivables figures (only on an authenticated /metrics)

    def collect(self):
        up = GaugeMetricFamily("erp_database_up", "1 if the ERP reached its database at scrape time")
        build = GaugeMetricFamily("erp_build_info", "The ERP's release and its database's schema revision "
                                  "(always 1)", labels=["version", "schema_revision"])
        midnight = dt.datetime.now(dt.timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
        try:
            status = schema_status(self.db.engine)
            with self.db.session(write=False) as s:
                orders = dict(s.execute(select(SalesOrder.state, func.count()).group_by(SalesOrder.state)).all())
                today = s.scalar(select(func.count()).select_from(SalesOrder).where(SalesOrder.order_date >= midnight))
                open_ar = s.scalar(select(func.coalesce(func.sum(Invoice.gross_total - Invoice.amount_paid), 0))
                                   .where(Invoice.kind == "customer", Invoice.state != "paid"))
                low = s.scalar(select(func.count(func.distinct(ReorderRule.product_id))).select_from(ReorderRule)
                               .outerjoin(StockLevel, (StockLevel.product_id == ReorderRule.product_id)
                                          & (StockLevel.warehouse_id == ReorderRule.warehouse_id))
                               .where(func.coalesce(StockLevel.quantity, 0) < ReorderRule.min_quantity))
                maint = maintenance.state(s)["enabled"]
        except Exception:  # noqa: BLE001 - the scrape must still answer when the database is down
            up.add_metric([], 0)
            build.add_metric([__version__, "unknown"], 1)
            yield up
            yield build
            return
        up.add_metric([], 1)
        yield up
        build.add_metric([__version__, status.current or "none"], 1)
        yield build
        yield GaugeMetricFamily("erp_schema_supported", "1 if this code supports the database's schema revision",
                                value=int(status.supported))
        yield GaugeMetricFamily("erp_maintenance_mode", "1 while the ERP is read-only (maintenance mode)",
                                value=int(maint))
        yield GaugeMetricFamily("erp_low_stock_products", "Products below the minimum of a reorder rule",
                                value=low or 0)
        if not self.business:
            return
        so = GaugeMetricFamily("erp_sales_orders", "Sales orders by state", labels=["state"])
        for state in SALES_ORDER.states:
            so.add_metric([state], orders.get(state, 0))
        yield so
        yield GaugeMetricFamily("erp_sales_orders_today", "Sales orders dated today (UTC)", value=today or 0)
        yield GaugeMetricFamily("erp_receivables_open_amount", "Open customer invoice amount (currency units)",
                                value=float(open_ar or 0))


_INT = struct.Struct("i")
_DOUBLE = struct.Struct("d")


class MultiProcessFiles:
    """The merge of prometheus_client.multiprocess.MultiProcessCollector, for the kinds of
    instruments the ERP has (counters, histograms, livesum gauges), made cheap enough to scrape
    often: the files only ever grow by appending keys, so each file's keys and value offsets are
    indexed once and every scrape only reads the values. Same output as upstream's merge (a test
    compares them); a directory holding any other kind of file is merged by upstream's."""

    KINDS = {"counter": "counter", "histogram": "histogram", "gauge_livesum": "gauge"}

    def __init__(self, path: str):
        from prometheus_client import multiprocess

        self.path = path
        self._upstream = multiprocess.MultiProcessCollector(None, path=path)
        self._index: dict[str, tuple[int, int, list]] = {}  # path -> (inode, used, [(key, offset)])
        self._keys: dict[str, tuple] = {}

    def _entries(self, path: str, data: bytes, used: int, inode: int) -> list:
        known = self._index.get(path)
        if known is None or known[0] != inode or known[1] > used:
            known = (inode, 8, [])
        _, pos, entries = known
        while pos < used:
            n = _INT.unpack_from(data, pos)[0]
            if n + pos > used:
                raise RuntimeError(f"{path}: read beyond the used size, the file is corrupted")
            key = data[pos + 4:pos + 4 + n].decode("utf-8")
            pos += 4 + n + (8 - (n + 4) % 8)
            entries.append((key, pos))
            pos += 16
        self._index[path] = (inode, used, entries)
        return entries

    def _parse(self, key: str, typ: str) -> tuple:
        metric_name, name, labels, help_text = json.loads(key)
        le = None
        if typ == "histogram" and name.endswith("_bucket"):
            le = float(labels.pop("le"))
        return metric_name, name, labels, help_text, typ, le, tuple(sorted(labels.items()))

    def collect(self):
        from prometheus_client.metrics_core import Metric
        from prometheus_client.samples import Sample
        from prometheus_client.utils import floatToGoString

        files = glob.glob(os.path.join(self.path, "*.db"))
        kinds = {}
        for f in files:
            kind = os.path.basename(f).rsplit("_", 1)[0]
            if kind not in self.KINDS:
                return self._upstream.collect()
            kinds[f] = self.KINDS[kind]
        sums: dict[str, float] = {}
        types: dict[str, str] = {}
        for f in files:
            try:
                with open(f, "rb") as fh:
                    inode = os.fstat(fh.fileno()).st_ino
                    data = fh.read(mmap.PAGESIZE)
                    used = _INT.unpack_from(data, 0)[0]
                    if used > len(data):
                        data += fh.read(used - len(data))
            except FileNotFoundError:  # a dead worker's live gauges, removed meanwhile
                continue
            typ = kinds[f]
            for key, offset in self._entries(f, data, used, inode):
                sums[key] = sums.get(key, 0.0) + _DOUBLE.unpack_from(data, offset)[0]
                types[key] = typ
        for gone in set(self._index) - set(files):
            del self._index[gone]

        metrics: dict[str, Metric] = {}
        buckets: dict[tuple, list] = {}
        for key, value in sums.items():
            info = self._keys.get(key)
            if info is None:
                info = self._keys[key] = self._parse(key, types[key])
            metric_name, name, labels, help_text, typ, le, group = info
            metric = metrics.get(metric_name)
            if metric is None:
                metric = metrics[metric_name] = Metric(metric_name, help_text, typ)
            if le is None:
                metric.samples.append(Sample(name, labels, value))
            else:
                buckets.setdefault((metric_name, group), []).append((le, value))
        for (metric_name, group), les in buckets.items():
            les.sort()
            labels = dict(group)
            samples = metrics[metric_name].samples
            acc = 0.0
            for le, value in les:
                acc += value
                samples.append(Sample(metric_name + "_bucket", {**labels, "le": floatToGoString(le)}, acc))
            samples.append(Sample(metric_name + "_count", labels, acc))
        return metrics.values()


def registry_for(db, inst: Instruments | None, business: bool = True) -> CollectorRegistry:
    """The registry /metrics renders: the instruments (this app's, or every worker's files in
    multiprocess mode) and the database's gauges (the business figures among them when `business`)."""
    path = multiprocess_dir()
    if path is not None:
        registry = CollectorRegistry()
        os.makedirs(path, exist_ok=True)
        registry.register(MultiProcessFiles(path))
    else:
        registry = inst.registry if inst is not None else CollectorRegistry()
    registry.register(BusinessCollector(db, business))
    return registry


def instrument(app: Flask, db) -> CollectorRegistry:
    """Instrument the app's requests and its database; return the registry /metrics serves."""
    inst = _instruments(CollectorRegistry())
    app.extensions["erp_instruments"] = inst
    done = db.__dict__.setdefault("_erp_instrumented_by", set())
    if id(inst) not in done:  # a Database shared by two apps of one process is instrumented once
        instrument_engine(db.engine, inst)
        done.add(id(inst))

    base = app.request_class

    class Request(base):
        def __init__(self, environ, *args, **kw):
            super().__init__(environ, *args, **kw)
            environ[REQUEST_KEY] = self

    app.request_class = Request
    app.wsgi_app = _timed(app.wsgi_app, inst)
    settings = app.config.get("ERP_SETTINGS")
    registry = registry_for(db, inst, business=bool(getattr(settings, "metrics_token", "")))
    app.extensions["erp_metrics_registry"] = registry
    return registry
