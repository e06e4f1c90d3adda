#!/usr/bin/env python
"""Order-to-invoice throughput and latency of the ERP's REST API, over real HTTP.

One flow is what a user does to sell goods, four requests through the REST API:

    POST /api/v1/sales-orders               (2-3 lines, as the 'sales' role)       -> 201
    POST /api/v1/sales-orders/<id>/confirm  (as 'sales')                           -> 200
    POST /api/v1/sales-orders/<id>/deliver  (json {}, as 'warehouse')              -> 200
    POST /api/v1/sales-orders/<id>/invoice  (as 'finance')                         -> 201

For each backend (SQLite file, PostgreSQL database) the bench makes a fresh migrated database,
serves the ERP the way `erpctl up` does (a listening socket held here, the supervisor's launcher as a
child: --workers worker processes of --server-threads threads, 1 worker being one waitress process;
by default 2 workers and the single-process reference, measured interleaved window by window), sets
up master data and stock through the API, then drives it with 1, 8 and 32 concurrent clients (a thread each with its own keep-alive
requests.Session) and prints flows/s, requests/s and p50/p99 latency of whole flows and of each
step. Every non-expected status, every connection failure and every warning or error the server
logs is counted and shown: they are findings, not noise. After the runs the bench checks the
database with erp_core.invariants and compares the invoiced orders with the flows that succeeded.

    python bench/erp_api.py                                   # both backends, 1/8/32 clients, 10 s
    python bench/erp_api.py --backends sqlite --clients 8 --duration 5 --warmup 1 --json

Not a test: it asserts nothing and is never run by pytest. See bench/README.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

FIELD_KEY = "bench-key"
PASSWORD = "bench password 2024"
ROLES = {"admin": "bench_admin", "sales": "bench_sales", "warehouse": "bench_warehouse", "finance": "bench_finance"}
STEPS = ("create", "confirm", "deliver", "invoice")
STOCK_PER_PRODUCT = 10_000_000  # units bought and received per product: deliveries never run out
REQUEST_TIMEOUT = 120.0
DEFAULT_PG_URL = os.environ.get("ERPCTL_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


# ---- the server process -----------------------------------------------------------------------

class _JsonLines(logging.Handler):
    """The ERP's log lines (passed on by ErpProcess) as one JSON object a line in the server log."""

    def __init__(self, path: Path, pid_of):
        super().__init__(logging.WARNING)
        self._file = open(path, "a")
        self._pid_of = pid_of

    def emit(self, record):
        if getattr(record, "erp_pid", None) != self._pid_of():
            return
        try:
            exc = getattr(record, "exc_text", None)
            exc = exc.strip().splitlines()[-1] if exc else None
            line = json.dumps({"t": record.created, "level": record.levelname,
                               "logger": getattr(record, "erp_logger", None) or record.name,
                               "msg": record.getMessage()[:500], "exc": exc and exc[:500]})
            self._file.write(line + "\n")
            self._file.flush()
        except Exception:  # noqa: BLE001 - logging must never break the bench
            pass

    def close(self):
        self._file.close()
        super().close()


class ServerProcess:
    """The ERP served the way `erpctl up` serves it: a listening socket this process holds, and the
    launcher of erpctl up's supervisor (controlplane.release.process.ErpProcess) as its child, with
    `workers` worker processes of `threads` threads (1 worker: one waitress process)."""

    def __init__(self, url: str, workers: int, threads: int, log_path: Path, port: int = 0):
        from controlplane.release.process import ErpProcess
        from controlplane.release.supervisor import Bundled, listen_socket

        self.log_path, self.workers, self.threads = log_path, workers, threads
        log_path.touch()
        self._sock = listen_socket("127.0.0.1", port, "--port")
        port = self._sock.getsockname()[1]
        self.erp = ErpProcess(Bundled("bench"), url, FIELD_KEY, port=port, log_level="warning", sock=self._sock,
                              env={"ERP_MFA_ROLES": "none"},  # API logins: no second factor
                              workers=workers, threads=threads)
        self._log = _JsonLines(log_path, lambda: self.erp.pid)
        erp_log = logging.getLogger("controlplane.erp")
        erp_log.addHandler(self._log)
        erp_log.setLevel(logging.WARNING)
        erp_log.propagate = False
        self.erp.start()
        self.proc = self.erp._proc
        try:
            self.erp.wait_serving(timeout=120)
        except Exception as exc:
            self.stop()
            raise RuntimeError(f"the ERP server did not start: {exc}") from None
        self.base = f"http://127.0.0.1:{port}"

    def alive(self) -> bool:
        return self.erp.alive()

    def cpu_seconds(self) -> float | None:
        """CPU of the ERP's processes: its master and its live workers."""
        try:
            import psutil
            root = psutil.Process(self.proc.pid)
            total = 0.0
            for p in [root, *root.children(recursive=True)]:
                try:
                    t = p.cpu_times()
                    total += t.user + t.system
                except psutil.NoSuchProcess:
                    pass
            return total
        except Exception:  # noqa: BLE001 - psutil missing or the process gone
            return None

    def stop(self) -> None:
        self.erp.stop()
        self._sock.close()
        logging.getLogger("controlplane.erp").removeHandler(self._log)
        self._log.close()


def server_log_summary(path: Path) -> list[dict]:
    """Warnings and errors the server logged, grouped (numbers folded to '#'), most frequent first."""
    groups: dict[tuple, dict] = {}
    for raw in path.read_text(errors="replace").splitlines():
        try:
            rec = json.loads(raw)
        except ValueError:
            rec = {"level": "STDERR", "logger": "-", "msg": raw[:500], "exc": None}
        folded = re.sub(r"\d+", "#", rec["msg"])
        key = (rec["level"], rec["logger"], folded, rec.get("exc"))
        g = groups.setdefault(key, {"level": rec["level"], "logger": rec["logger"], "message": folded,
                                    "example": rec["msg"], "exception": rec.get("exc"), "count": 0,
                                    "max_number": None})
        g["count"] += 1
        numbers = [int(n) for n in re.findall(r"\d+", rec["msg"])]
        if len(numbers) == 1:  # e.g. waitress' "Task queue depth is 7": keep the worst
            g["max_number"] = max(g["max_number"] or 0, numbers[0])
    return sorted(groups.values(), key=lambda g: -g["count"])


# ---- databases --------------------------------------------------------------------------------

class Backend:
    name = ""
    url = ""

    def create(self) -> str: ...
    def drop(self) -> None: ...


class SqliteBackend(Backend):
    name = "sqlite"

    def __init__(self, workdir: Path):
        self.path = workdir / "erp.sqlite3"

    def create(self) -> str:
        self.url = f"sqlite:///{self.path}"
        return self.url

    def drop(self) -> None:
        for suffix in ("", "-wal", "-shm"):
            Path(str(self.path) + suffix).unlink(missing_ok=True)


class PostgresBackend(Backend):
    name = "postgres"

    def __init__(self, admin_url: str, dbname: str | None = None):
        from sqlalchemy import create_engine

        from erp_core.db import normalise_url
        self.admin_url = admin_url
        self.admin = create_engine(normalise_url(admin_url), isolation_level="AUTOCOMMIT")
        self.dbname = dbname or f"erp_bench_{uuid.uuid4().hex[:10]}"

    def create(self) -> str:
        from sqlalchemy import text
        with self.admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{self.dbname}"'))
        self.url = f"{self.admin_url.rsplit('/', 1)[0]}/{self.dbname}"
        return self.url

    def drop(self) -> None:
        from sqlalchemy import text
        with self.admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{self.dbname}" WITH (FORCE)'))
        self.admin.dispose()


def prepare_database(url: str) -> None:
    """Migrate and add the bench users (the only things not done through the API)."""
    from erp_core import crypto
    from erp_core.db import Database, migrate
    from erp_core.services import auth

    migrate(url)
    crypto.configure(FIELD_KEY)
    db = Database(url)
    try:
        with db.session() as s:
            for role, username in ROLES.items():
                auth.add_user(s, username, PASSWORD, role, full_name=f"Bench {role}")
    finally:
        db.dispose()


def check_database(url: str) -> dict:
    """Invariant violations and order states after the load."""
    from sqlalchemy import func, select

    from erp_core import crypto, invariants
    from erp_core.db import Database
    from erp_core.models import Invoice, SalesOrder

    crypto.configure(FIELD_KEY)
    db = Database(url)
    try:
        with db.session(write=False) as s:
            violations = invariants.check_all(s)
            states = dict(s.execute(select(SalesOrder.state, func.count()).group_by(SalesOrder.state)).all())
            invoices = s.scalar(select(func.count()).select_from(Invoice).where(Invoice.kind == "customer"))
    finally:
        db.dispose()
    return {"violations": [v.as_dict() for v in violations[:20]], "violation_count": len(violations),
            "sales_orders_by_state": states, "customer_invoices": invoices}


# ---- the client side --------------------------------------------------------------------------

class ApiError(Exception):
    pass


@dataclass
class Fixture:
    base: str
    tokens: dict
    customer: int
    warehouse: int
    products: list


def _call(session, method, url, token, expect, json_body=None):
    r = session.request(method, url, json=json_body, headers={"Authorization": f"Bearer {token}"},
                        timeout=REQUEST_TIMEOUT)
    if r.status_code != expect:
        raise ApiError(f"{method} {url}: {r.status_code} {r.text[:500]}")
    return r.json()


def set_up_through_api(base: str, products: int) -> Fixture:
    """Log in each role; create a warehouse, a customer, a supplier and products; buy and receive
    a large purchase order so that deliveries never run out."""
    import requests

    s = requests.Session()
    tokens = {}
    for role, username in ROLES.items():
        r = s.post(f"{base}/api/v1/auth/login", json={"username": username, "password": PASSWORD}, timeout=60)
        if r.status_code != 200:
            raise ApiError(f"login {username}: {r.status_code} {r.text[:300]}")
        tokens[role] = r.json()["token"]
    admin = tokens["admin"]
    api = f"{base}/api/v1"
    wh = _call(s, "POST", f"{api}/warehouses", admin, 201, {"code": "BENCH", "name": "Bench warehouse"})["id"]
    cust = _call(s, "POST", f"{api}/partners", admin, 201,
                 {"code": "BC1", "name": "Bench customer", "is_customer": True})["id"]
    supp = _call(s, "POST", f"{api}/partners", admin, 201,
                 {"code": "BS1", "name": "Bench supplier", "is_supplier": True})["id"]
    pids = [_call(s, "POST", f"{api}/products", admin, 201,
                  {"sku": f"BP{i:03d}", "name": f"Bench product {i}", "sale_price": f"{10 + 7 * i}.50",
                   "tax_code": "VAT13"})["id"] for i in range(1, products + 1)]
    po = _call(s, "POST", f"{api}/purchase-orders", admin, 201, {
        "partner_id": supp, "warehouse_id": wh,
        "lines": [{"product_id": p, "quantity": str(STOCK_PER_PRODUCT), "unit_price": "4.00"} for p in pids]})
    _call(s, "POST", f"{api}/purchase-orders/{po['id']}/confirm", admin, 200)
    _call(s, "POST", f"{api}/purchase-orders/{po['id']}/receive", admin, 200)
    s.close()
    return Fixture(base, tokens, cust, wh, pids)


@dataclass
class ClientRecord:
    """What one client thread saw (merged after the run, so no locking on the hot path)."""
    flow_lat: list = field(default_factory=list)
    step_lat: dict = field(default_factory=lambda: {s: [] for s in STEPS})
    flow_ends: list = field(default_factory=list)
    ok_total: int = 0          # successful flows in any phase (warm-up included)
    failed: int = 0            # failed flows started in the measured window
    failed_total: int = 0
    errors: Counter = field(default_factory=Counter)   # (step, status, folded detail) -> count, any phase
    examples: dict = field(default_factory=dict)       # the same key -> the first detail seen


def _short(text: str) -> str:
    try:
        body = json.loads(text)
        if isinstance(body, dict):
            return f"{body.get('title', '')}: {body.get('detail', '')}"[:200]
    except ValueError:
        pass
    return text[:200]


@dataclass
class Window:
    """The measured window; stop_at moves later while too few calls have been measured."""
    measure_from: float
    stop_at: float


def client(fx: Fixture, seed: int, window: Window, rec: ClientRecord, idempotency: bool) -> None:
    import requests

    rng = random.Random(seed)
    api = f"{fx.base}/api/v1"
    auth = {role: {"Authorization": f"Bearer {tok}"} for role, tok in fx.tokens.items()}
    with requests.Session() as s:
        while True:
            start = time.perf_counter()
            if start >= window.stop_at:
                return
            measured = start >= window.measure_from
            lines = [{"product_id": p, "quantity": str(rng.randint(1, 3))}
                     for p in rng.sample(fx.products, rng.choice((2, 3)))]
            order_id = None
            lat = {}
            plan = [("create", "POST", "/sales-orders", "sales", 201,
                     {"partner_id": fx.customer, "warehouse_id": fx.warehouse, "lines": lines}),
                    ("confirm", "POST", "/sales-orders/{id}/confirm", "sales", 200, None),
                    ("deliver", "POST", "/sales-orders/{id}/deliver", "warehouse", 200, {}),
                    ("invoice", "POST", "/sales-orders/{id}/invoice", "finance", 201, None)]
            failed = False
            for step, method, path, role, expect, body in plan:
                headers = auth[role]
                if step == "create" and idempotency:
                    headers = {**headers, "Idempotency-Key": uuid.uuid4().hex}
                t0 = time.perf_counter()
                try:
                    r = s.request(method, api + path.format(id=order_id), json=body, headers=headers,
                                  timeout=REQUEST_TIMEOUT)
                    status, detail = r.status_code, (_short(r.text) if r.status_code != expect else "")
                except requests.RequestException as exc:
                    status, detail = "exception", f"{type(exc).__name__}: {str(exc)[:200]}"
                t1 = time.perf_counter()
                if status != expect:
                    key = (step, status, re.sub(r"\d+(\.\d+)?", "#", detail))
                    rec.errors[key] += 1
                    rec.examples.setdefault(key, detail)
                    failed = True
                    break
                lat[step] = t1 - t0
                if step == "create":
                    order_id = r.json()["id"]
            end = time.perf_counter()
            if failed:
                rec.failed_total += 1
                rec.failed += measured
                continue
            rec.ok_total += 1
            rec.flow_ends.append(end)  # throughput counts every flow that ends inside the window
            if measured:
                rec.flow_lat.append(end - start)
                for step, v in lat.items():
                    rec.step_lat[step].append(v)


def percentile(values: list, p: float) -> float | None:
    """Nearest-rank percentile."""
    if not values:
        return None
    v = sorted(values)
    return v[max(0, math.ceil(p / 100 * len(v)) - 1)]


def _host_busy():
    try:
        import psutil
        t = psutil.cpu_times()
        total = sum(t) - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0)  # guest is inside user
        idle = t.idle + getattr(t, "iowait", 0.0)
        return total - idle, total
    except Exception:  # noqa: BLE001
        return None


def run_load(fx: Fixture, server: ServerProcess, clients: int, duration: float, warmup: float,
             idempotency: bool, min_calls: int = 0, max_duration: float = 600.0) -> dict:
    """One measured window of at least `duration` seconds and, within max_duration, min_calls calls."""
    recs = [ClientRecord() for _ in range(clients)]
    t_start = time.perf_counter()
    window = Window(t_start + warmup, t_start + warmup + duration)
    measure_from = window.measure_from
    threads = [threading.Thread(target=client, args=(fx, 1000 * clients + i, window, recs[i], idempotency),
                                daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    # CPU counters over the measured window only
    time.sleep(max(0.0, measure_from - time.perf_counter()))
    srv0, cli0, host0 = server.cpu_seconds(), time.process_time(), _host_busy()
    time.sleep(max(0.0, window.stop_at - time.perf_counter()))
    # too few calls yet: the window goes on (its end kept well ahead, so that no client, late on a
    # loaded host, sees it pass and leaves while the others go on)
    while (sum(len(r.step_lat[st]) for r in recs for st in STEPS) < min_calls
           and time.perf_counter() < measure_from + max_duration and any(t.is_alive() for t in threads)):
        window.stop_at = time.perf_counter() + 5.0
        time.sleep(0.5)
    stop_at = window.stop_at = min(window.stop_at, time.perf_counter())
    duration = stop_at - measure_from
    srv1, cli1, host1 = server.cpu_seconds(), time.process_time(), _host_busy()
    for t in threads:
        t.join()
    drained = time.perf_counter() - stop_at

    flow_lat = [x for r in recs for x in r.flow_lat]
    completed_in_window = sum(1 for r in recs for e in r.flow_ends if measure_from <= e <= stop_at)
    errors: Counter = Counter()
    examples: dict = {}
    for r in recs:
        errors.update(r.errors)
        for k, v in r.examples.items():
            examples.setdefault(k, v)
    steps = {}
    calls = []
    for step in STEPS:
        vals = [x for r in recs for x in r.step_lat[step]]
        calls += vals
        steps[step] = {"n": len(vals), "p50_ms": _ms(percentile(vals, 50)), "p99_ms": _ms(percentile(vals, 99))}
    failed = sum(r.failed for r in recs)
    cpu = {"server_pct_of_core": _pct(srv1 - srv0, duration) if srv0 is not None and srv1 is not None else None,
           "client_pct_of_core": _pct(cli1 - cli0, duration),
           "host_pct_all_cores": (round(100 * (host1[0] - host0[0]) / (host1[1] - host0[1]), 1)
                                  if host0 and host1 and host1[1] > host0[1] else None)}
    if host0 and host1 and srv0 is not None and srv1 is not None:
        # busy CPU of everything else on the host: the database server (PostgreSQL) and foreign load
        cpu["rest_pct_of_core"] = _pct(max(0.0, (host1[0] - host0[0]) - (srv1 - srv0) - (cli1 - cli0)), duration)
    else:
        cpu["rest_pct_of_core"] = None
    return {
        "clients": clients, "duration_s": round(duration, 2), "warmup_s": warmup,
        "calls": len(calls), "call_p50_ms": _ms(percentile(calls, 50)), "call_p99_ms": _ms(percentile(calls, 99)),
        "flows": len(flow_lat), "flows_per_s": round(completed_in_window / duration, 2),
        "requests_per_s": round(4 * completed_in_window / duration, 1),
        "flow_p50_ms": _ms(percentile(flow_lat, 50)), "flow_p99_ms": _ms(percentile(flow_lat, 99)),
        "flow_max_ms": _ms(max(flow_lat) if flow_lat else None),
        "steps": steps,
        "failed_flows": failed, "failed_flows_incl_warmup": sum(r.failed_total for r in recs),
        "ok_flows_incl_warmup": sum(r.ok_total for r in recs),
        "errors": [{"step": k[0], "status": k[1], "detail": k[2], "example": examples[k], "count": n}
                   for k, n in errors.most_common()],
        "drain_s": round(drained, 3), "cpu": cpu,
        "server_alive": server.alive(),
    }


def median_run(repeats: list[dict]) -> dict:
    """The run of median throughput, with the figures of every repeat beside it."""
    ordered = sorted(repeats, key=lambda r: r["flows_per_s"])
    mid = dict(ordered[len(ordered) // 2])
    mid["repeats"] = [{k: r[k] for k in ("flows_per_s", "calls", "call_p50_ms", "call_p99_ms", "flow_p99_ms")}
                      for r in repeats]
    mid["call_p99_ms_median"] = sorted(r["call_p99_ms"] or 0 for r in repeats)[len(repeats) // 2]
    return mid


def _ms(seconds):
    return None if seconds is None else round(seconds * 1000, 2)


def _pct(seconds, duration):
    return round(100 * seconds / duration, 1)


# ---- one backend, all client counts -----------------------------------------------------------

def bench_backend(name: str, args, workdir: Path, say) -> dict:
    out: dict = {"backend": name, "runs": [], "server_log": [], "error": None}
    try:
        backend = SqliteBackend(workdir) if name == "sqlite" else PostgresBackend(args.pg_url, args.db_name)
        if name == "postgres":
            from sqlalchemy import text
            with backend.admin.connect() as c:
                out["server_version"] = c.execute(text("SHOW server_version")).scalar()
    except Exception as exc:  # noqa: BLE001 - an unreachable database is reported, the others still run
        out["error"] = f"cannot use {name}: {type(exc).__name__}: {str(exc).splitlines()[0]}"
        say(out["error"])
        return out
    servers: dict = {}
    created = False
    try:
        say(f"[{name}] creating and migrating a fresh database")
        url = backend.create()
        created = True
        out["database"] = url if name == "postgres" else "sqlite file in a temporary directory"
        prepare_database(url)
        fixture = None
        for w in args.workers:
            threads = _threads(args, w)
            servers[w] = ServerProcess(url, w, threads, workdir / f"server-{name}-{w}w.log",
                                       args.port if len(args.workers) == 1 else 0)
            say(f"[{name}] ERP pid {servers[w].proc.pid} at {servers[w].base}: {w} worker process(es) x "
                f"{threads} threads")
            fixture = fixture or set_up_through_api(servers[w].base, args.products)
        ok_flows = 0
        for n in args.clients:
            say(f"[{name}] {n} client(s): {args.repeat} x ({args.warmup:g}s warm-up + at least "
                f"{args.duration:g}s and {args.min_calls} calls measured) for each of {args.workers} worker(s), "
                "interleaved")
            repeats: dict = {w: [] for w in args.workers}
            for _ in range(args.repeat):
                for w, server in servers.items():
                    fx = dataclasses.replace(fixture, base=server.base)
                    repeats[w].append(run_load(fx, server, n, args.duration, args.warmup, args.idempotency,
                                               args.min_calls))
                    repeats[w][-1]["load_average"] = os.getloadavg()[0]
                    ok_flows += repeats[w][-1]["ok_flows_incl_warmup"]
            for w in args.workers:
                r = median_run(repeats[w])
                r["workers"], r["threads"] = w, servers[w].threads
                out["runs"].append(r)
                if r["errors"]:
                    say(f"[{name}]   {w} worker(s): {sum(e['count'] for e in r['errors'])} failed request(s): "
                        + "; ".join(f"{e['step']} {e['status']} x{e['count']} {e['example']}" for e in r["errors"][:3]))
            dead = [w for w, server in servers.items() if not server.alive()]
            if dead:
                out["error"] = f"the ERP server process with {dead[0]} worker(s) died " \
                               f"(exit code {servers[dead[0]].proc.returncode})"
                break
        for w in list(servers):
            servers.pop(w).stop()
            out["server_log"] += server_log_summary(workdir / f"server-{name}-{w}w.log")
        say(f"[{name}] checking invariants")
        out["check"] = check_database(url)
        out["check"]["successful_flows"] = ok_flows
    except Exception as exc:  # noqa: BLE001 - report and go on with the next backend
        out["error"] = f"{type(exc).__name__}: {exc}"
        say(f"[{name}] FAILED: {out['error']}")
    finally:
        for w, server in servers.items():
            server.stop()
            out["server_log"] += server_log_summary(workdir / f"server-{name}-{w}w.log")
        if created and not args.keep:
            try:
                backend.drop()
            except Exception as exc:  # noqa: BLE001
                say(f"[{name}] could not drop the database: {exc}")
    return out


def _threads(args, workers: int) -> int:
    """Threads of each worker: --server-threads, else what erpctl up gives (8 each; one process: 16)."""
    return args.server_threads or (16 if workers == 1 else 8)


# ---- output -----------------------------------------------------------------------------------

def _f(v, width, nd=1):
    return f"{'-' if v is None else f'{v:.{nd}f}':>{width}}"


def _pair(*values, nd=1):
    """'a/b[/c]' with '-' for a missing value."""
    return "/".join("-" if v is None else f"{v:.{nd}f}" for v in values)


def render(results: list[dict], meta: dict) -> str:
    lines = [f"ERP order-to-invoice flows over HTTP  (python {meta['python']}, {meta['cpus']} CPUs, "
             f"served as erpctl up serves it: workers x threads as shown (1 worker: one waitress process), "
             f"at least {meta['duration_s']:g}s and {meta['min_calls']} calls measured after {meta['warmup_s']:g}s "
             f"warm-up per run, median of {meta['repeat']} runs by throughput)",
             "one flow = POST sales-orders (2-3 lines) + confirm + deliver + invoice; latencies in ms "
             "(p50/p99)",
             "cpu = % of one core: ERP server processes / bench clients / rest of the host (PostgreSQL and any "
             "other load); host = % of all cores busy; load = 1-minute load average after the window",
             ""]
    head = (f"{'backend':<9}{'wk x thr':>9}{'clients':>8}{'flows/s':>9}{'req/s':>8}{'flows':>7}{'fail':>6}"
            f"{'flow p50':>10}{'flow p99':>10}{'calls':>7}{'call p50/p99':>14}"
            + "".join(f"{s + ' p50/p99':>19}" for s in STEPS) + f"{'cpu srv/cli/rest':>18}{'host':>6}{'load':>6}")
    lines += [head, "-" * len(head)]
    for b in results:
        if not b["runs"]:
            lines.append(f"{b['backend']:<9}  not measured: {b['error']}")
            continue
        for r in b["runs"]:
            st = "".join(f"{_pair(r['steps'][s]['p50_ms'], r['steps'][s]['p99_ms']):>19}" for s in STEPS)
            cpu = r["cpu"]
            lines.append(f"{b['backend']:<9}{str(r.get('workers')) + 'x' + str(r.get('threads')):>9}{r['clients']:>8}{_f(r['flows_per_s'], 9)}{_f(r['requests_per_s'], 8, 0)}"
                         f"{r['flows']:>7}{r['failed_flows']:>6}{_f(r['flow_p50_ms'], 10)}{_f(r['flow_p99_ms'], 10)}"
                         f"{r['calls']:>7}{_pair(r['call_p50_ms'], r['call_p99_ms']):>14}{_f(r.get('call_p99_ms_median'), 8)}"
                         f"{st}{_pair(cpu['server_pct_of_core'], cpu['client_pct_of_core'], cpu['rest_pct_of_core'], nd=0):>18}"
                         f"{_f(cpu['host_pct_all_cores'], 6, 0)}{_f(r.get('load_average'), 6, 1)}")
    for b in results:
        lines.append("")
        lines.append(f"[{b['backend']}]" + (f" PostgreSQL {b['server_version']}" if b.get("server_version") else ""))
        if b.get("error"):
            lines.append(f"  ERROR: {b['error']}")
        errs = [(r["clients"], e) for r in b["runs"] for e in r["errors"]]
        if errs:
            lines.append("  failed requests (all phases, warm-up included):")
            for clients, e in errs:
                lines.append(f"    {clients:>3} clients  {e['step']:<8} {e['status']}  x{e['count']:<5} {e['example']}")
        else:
            lines.append("  failed requests: none")
        if b["server_log"]:
            lines.append("  server log warnings/errors (grouped):")
            for g in b["server_log"][:15]:
                exc = f"  [{g['exception']}]" if g["exception"] else ""
                worst = f" (max #={g['max_number']})" if g["max_number"] is not None else ""
                lines.append(f"    x{g['count']:<5} {g['level']} {g['logger']}: {' | '.join(g['example'].splitlines())[:200]}{worst}{exc}")
        else:
            lines.append("  server log warnings/errors: none")
        chk = b.get("check")
        if chk:
            invoiced = chk["sales_orders_by_state"].get("invoiced", 0)
            lines.append(f"  after the load: {chk['violation_count']} invariant violation(s); sales orders by state "
                         f"{chk['sales_orders_by_state']}; {chk['customer_invoices']} customer invoices for "
                         f"{chk['successful_flows']} successful flows"
                         + ("" if invoiced == chk["successful_flows"] else "  <-- MISMATCH"))
            for v in chk["violations"][:5]:
                lines.append(f"    violation {v['check']}: {v['detail']} ({v['ref']})")
    return "\n".join(lines)


# ---- command line -----------------------------------------------------------------------------

def _csv(kind):
    def parse(text):
        items = [x.strip() for x in text.split(",") if x.strip()]
        try:
            return [kind(x) for x in items]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}") from None
    return parse


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python bench/erp_api.py",
        description="Measure order-to-invoice flows per second and p50/p99 latency of the ERP REST API over "
                    "HTTP, with 1, 8 and 32 concurrent clients, on SQLite and PostgreSQL side by side.",
        epilog="A flow is POST /sales-orders, /confirm, /deliver, /invoice (4 requests). Each backend gets a "
               "fresh database and its own ERP server process. See bench/README.md.")
    p.add_argument("--backends", type=_csv(str), default=["sqlite", "postgres"],
                   help="comma-separated: sqlite,postgres (default: both)")
    p.add_argument("--clients", type=_csv(int), default=[1, 8, 32],
                   help="comma-separated concurrent client counts (default: 1,8,32)")
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds per run (default: 10)")
    p.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each run (default: 2)")
    p.add_argument("--min-calls", type=int, default=2000,
                   help="API calls each measured window holds at least (it lasts longer if needed; default: 2000)")
    p.add_argument("--repeat", type=int, default=3,
                   help="windows per point; the table shows the one of median throughput (default: 3)")
    p.add_argument("--workers", type=_csv(int), default=[2, 1],
                   help="comma-separated worker process counts to compare, each served as erpctl up serves the "
                        "ERP and measured interleaved with the others (default: 2,1; 1 is one waitress process)")
    p.add_argument("--server-threads", type=int, default=None,
                   help="threads of each worker (default: erpctl up's, 8; 16 with one worker)")
    p.add_argument("--products", type=int, default=8, help="products to sell from (default: 8)")
    p.add_argument("--idempotency", action="store_true",
                   help="send an Idempotency-Key with each sales-order POST, as careful clients do")
    p.add_argument("--pg-url", default=DEFAULT_PG_URL,
                   help="PostgreSQL maintenance database URL; a uniquely named database is created beside it "
                        "and dropped at the end (default: $ERPCTL_PG_URL or %(default)s)")
    p.add_argument("--db-name", default=None,
                   help="name of the PostgreSQL database to create (default: erp_bench_<random>, so two runs can "
                        "share a server); it must not exist")
    p.add_argument("--port", type=int, default=0,
                   help="port of the ERP server process (default 0: a free port, so two runs can share a machine)")
    p.add_argument("--work", default=None, help="parent of the run's temporary directory (default: the temp dir)")
    p.add_argument("--keep", action="store_true",
                   help="keep the databases and the server logs (their paths are printed)")
    p.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    args = p.parse_args(argv)
    bad = [b for b in args.backends if b not in ("sqlite", "postgres")]
    if bad:
        p.error(f"unknown backend(s) {', '.join(bad)}: use sqlite and/or postgres")
    if any(n < 1 for n in args.clients + args.workers) or args.duration <= 0 or args.warmup < 0 or args.products < 3:
        p.error("clients must be >= 1, duration > 0, warmup >= 0 and products >= 3")

    def say(msg):
        print(msg, file=sys.stderr, flush=True)

    workdir = Path(tempfile.mkdtemp(prefix="erp-bench-", dir=args.work))
    import platform
    meta = {"python": platform.python_version(), "cpus": os.cpu_count(), "workers": args.workers,
            "server_threads": args.server_threads,
            "duration_s": args.duration, "warmup_s": args.warmup, "clients": args.clients,
            "min_calls": args.min_calls, "repeat": args.repeat,
            "products": args.products, "idempotency_key": args.idempotency,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    t0 = time.perf_counter()
    results = []
    try:
        for name in args.backends:
            results.append(bench_backend(name, args, workdir, say))
    finally:
        meta["elapsed_s"] = round(time.perf_counter() - t0, 1)
        if args.keep:
            say(f"kept: {workdir} (server logs, SQLite file)"
                + "".join(f"; PostgreSQL database {r['database']}" for r in results if r.get("database", "").startswith("postgres")))
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        print(json.dumps({"meta": meta, "backends": results}, indent=2, default=str))
    else:
        print(render(results, meta))
        print(f"\ntotal {meta['elapsed_s']}s")
    failed = any(b.get("error") for b in results) or any(r["errors"] for b in results for r in b["runs"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
