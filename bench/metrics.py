#!/usr/bin/env python
"""What monitoring costs: /metrics render time of both exporters, and the request latency the
ERP's instrumentation adds.

1. ERP /metrics, single process: an instrumented ERP on a seeded SQLite database (demo data,
   scale 1) whose instruments hold a realistic series set: every route of the ERP x the methods it
   takes x four statuses each, every label set with latency observations; then GET /metrics (the
   business gauges read from the database included) many times.
2. ERP /metrics, multi-worker: the same series written by N worker processes (default 4) to a
   PROMETHEUS_MULTIPROC_DIR, rendered by another process in multiprocess mode (all files merged).
3. Control plane /metrics: the ops console's exporter over a data directory holding results of
   every probe, backup, verification, restore test, upgrade, 30 scheduler jobs and 50 firing alerts.
4. Request latency with and without instrumentation, side by side in one run: two ERP apps on the
   same database, one built with create_app(..., instrument=False), served by waitress in one
   process; the client alternates between them request by request (keep-alive HTTP), on a mix of
   GET /api/v1/sales-orders?limit=20 and GET /api/v1/products/<id>. Also in-process (WSGI, no
   network), where the overhead is a larger share of a shorter request.

    python bench/metrics.py                       # ~1 min on a quiet machine
    python bench/metrics.py --renders 100 --requests 1000 --json

Targets: render <= 25 ms single-process and <= 75 ms multi-worker (p50); overhead <= 3 % of p50.
Not a test: it asserts nothing and is never run by pytest. See bench/README.md.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

FIELD_KEY = "bench-key"
PASSWORD = "bench password 2024"
USER = "bench_admin"
CACHE = Path(tempfile.gettempdir()) / "erpctl-bench-cache"  # --cache; the database in metrics-scale-1/
TARGETS = {"erp_single_ms": 25.0, "erp_multi_ms": 75.0, "overhead_pct": 3.0}
STATUSES = {"GET": ("200", "401", "403", "404"), "POST": ("201", "401", "409", "422"),
            "PUT": ("200", "401", "409", "422"), "PATCH": ("200", "401", "409", "422"),
            "DELETE": ("204", "401", "404", "409")}
LATENCIES = (0.002, 0.004, 0.008, 0.03, 0.2)


def pct(values, p) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))]


def summary_ms(seconds: list[float]) -> dict:
    ms = [s * 1000 for s in seconds]
    return {"n": len(ms), "p50_ms": round(pct(ms, 50), 3), "p99_ms": round(pct(ms, 99), 3),
            "mean_ms": round(statistics.fmean(ms), 3)}


# ---- the database ---------------------------------------------------------------------------------

def prepare_database(work: Path, cache: Path = CACHE) -> str:
    """A seeded SQLite database (cached between runs under `cache`; a lock keeps two runs from
    seeding it at once), copied into `work`."""
    import fcntl

    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".metrics-scale-1.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _prepare_database(work, cache / "metrics-scale-1")


def _prepare_database(work: Path, cache_dir: Path) -> str:
    from erp_core import crypto
    from erp_core.db import Database, code_head, current_revision, make_engine, migrate
    from erp_core.seed import seed
    from erp_core.services import auth

    cached = cache_dir / "erp.sqlite3"
    ok = False
    if cached.exists():
        engine = make_engine(f"sqlite:///{cached}")
        try:
            ok = current_revision(engine) == code_head()
        finally:
            engine.dispose()
    if not ok:
        shutil.rmtree(cache_dir, ignore_errors=True)
        cache_dir.mkdir(parents=True)
        url = f"sqlite:///{cached}"
        print("bench: seeding a demo database (once, cached in %s)" % cache_dir, file=sys.stderr)
        migrate(url)
        crypto.configure(FIELD_KEY)
        db = Database(url)
        seed(db, 1, single_transaction=True)
        with db.session() as s:
            auth.add_user(s, USER, PASSWORD, "admin")
        db.dispose()
    target = work / "erp.sqlite3"
    shutil.copy(cached, target)
    return f"sqlite:///{target}"


# ---- children: each measurement in a process of its own (multiprocess mode is chosen at import) --

def _app(url: str, instrument: bool = True):
    from erp_core.app import create_app
    from erp_core.config import Settings

    # the bench's admin logs in through the API: no second factor
    return create_app(Settings(url, field_key=FIELD_KEY, mfa_roles="none"), instrument=instrument)


def _fill_series(app) -> int:
    """Observe every (method, route, status) once per latency value; returns the label sets."""
    inst = app.extensions["erp_instruments"]
    n = 0
    for rule in app.url_map.iter_rules():
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            for status in STATUSES.get(method, ("200",)):
                for seconds in LATENCIES:
                    inst.observe_request(method, rule.rule, int(status), seconds)
                n += 1
    for status in (404, 405):
        inst.observe_request("GET", "unmatched", status, 0.001)
        n += 1
    for seconds in LATENCIES:
        inst.db_query.observe(seconds / 10)
    inst.exceptions.labels("/api/v1/sales-orders").inc()
    return n


def child_fill(url: str) -> dict:
    app = _app(url)
    return {"pid": os.getpid(), "label_sets": _fill_series(app)}


def child_erp_render(url: str, renders: int, fill: bool) -> dict:
    from prometheus_client import generate_latest

    app = _app(url)
    label_sets = _fill_series(app) if fill else None
    client = app.test_client()
    for _ in range(5):
        client.get("/metrics")
    http_times, cpu_times, text = [], [], ""
    for _ in range(renders):
        t0, c0 = time.perf_counter(), time.process_time()
        r = client.get("/metrics")
        http_times.append(time.perf_counter() - t0)
        cpu_times.append(time.process_time() - c0)
        text = r.get_data(as_text=True)
    # The same without the business gauges (the database's share of a scrape).
    from erp_core.metrics import BusinessCollector

    reg = app.extensions["erp_metrics_registry"]
    business = [c for c in list(reg._collector_to_names) if isinstance(c, BusinessCollector)]
    for c in business:
        reg.unregister(c)
    plain = []
    for _ in range(renders):
        t0 = time.perf_counter()
        generate_latest(reg)
        plain.append(time.perf_counter() - t0)
    series = sum(1 for line in text.splitlines() if line and not line.startswith("#"))
    return {"scrape": summary_ms(http_times), "scrape_cpu": summary_ms(cpu_times),
            "instruments_only": summary_ms(plain), "series": series,
            "bytes": len(text.encode()), "label_sets": label_sets,
            "files": len(os.listdir(os.environ["PROMETHEUS_MULTIPROC_DIR"]))
            if os.environ.get("PROMETHEUS_MULTIPROC_DIR") else None}


def child_latency_http(url: str, requests_n: int, port: int = 0) -> None:
    """Serve both apps (instrumented, and not) from this process; print the ports; run until stdin closes."""
    from erp_core.serve import Server

    on = _app(url, instrument=True)
    off = _app(url, instrument=False)
    servers = [Server(on, port=port, threads=4).start(), Server(off, port=port + 1 if port else 0, threads=4).start()]
    print(json.dumps({"on": servers[0].port, "off": servers[1].port}), flush=True)
    sys.stdin.read()
    for s in servers:
        s.stop(timeout=2)


def child_latency_wsgi(url: str, requests_n: int) -> dict:
    on, off = _app(url, instrument=True), _app(url, instrument=False)
    clients = {"on": on.test_client(), "off": off.test_client()}
    token = {}
    for side, c in clients.items():
        token[side] = c.post("/api/v1/auth/login", json={"username": USER, "password": PASSWORD}).json["token"]
    paths = _paths(clients["off"], token["off"])
    times = {"on": [], "off": []}
    inst = on.extensions["erp_instruments"]
    q0 = inst.db_query._sum.get(), _hist_count(inst.db_query)
    for i in range(requests_n + 200):
        order = ("on", "off") if i % 2 == 0 else ("off", "on")
        path = paths[i % len(paths)]
        for side in order:
            h = {"Authorization": f"Bearer {token[side]}"}
            t0 = time.perf_counter()
            r = clients[side].get(path, headers=h)
            dt_ = time.perf_counter() - t0
            assert r.status_code == 200, (path, r.status_code)
            if i >= 200:
                times[side].append(dt_)
    queries = (_hist_count(inst.db_query) - q0[1]) / (requests_n + 200)
    # CPU time per request (blind to other processes on the machine, mostly): batches of 20
    # requests, instrumented and not one after the other; the median of the paired differences.
    batch, cpu, diffs = 20, {"on": [], "off": []}, []
    for i in range(max(20, 2 * requests_n // batch)):
        for side in (("on", "off") if i % 2 == 0 else ("off", "on")):
            h = {"Authorization": f"Bearer {token[side]}"}
            c0 = time.process_time()
            for j in range(batch):
                clients[side].get(paths[j % len(paths)], headers=h)
            cpu[side].append((time.process_time() - c0) / batch)
        diffs.append(cpu["on"][-1] - cpu["off"][-1])
    off_cpu = statistics.median(cpu["off"])
    return {"on": summary_ms(times["on"]), "off": summary_ms(times["off"]), "queries_per_request": round(queries, 1),
            "cpu_per_request_us": {"on": round(statistics.median(cpu["on"]) * 1e6, 1), "off": round(off_cpu * 1e6, 1),
                                   "paired_difference_us": round(statistics.median(diffs) * 1e6, 1),
                                   "overhead_pct": round(100 * statistics.median(diffs) / off_cpu, 2)},
            "paths": paths}


def _hist_count(hist) -> float:
    return sum(b.get() for b in hist._buckets)


def _paths(client, token) -> list[str]:
    h = {"Authorization": f"Bearer {token}"}
    products = client.get("/api/v1/products?limit=5", headers=h).json["items"]
    return ["/api/v1/sales-orders?limit=20"] + [f"/api/v1/products/{p['id']}" for p in products[:1]]


def run_child(mode: str, *args, env_extra: dict | None = None, unset_mp: bool = True) -> dict:
    env = dict(os.environ)
    if unset_mp:
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update(env_extra or {})
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    r = subprocess.run([sys.executable, __file__, mode, *map(str, args)], capture_output=True, text=True,
                       env=env, timeout=900)
    if r.returncode != 0:
        raise SystemExit(f"bench: child {mode} failed:\n{r.stderr}")
    return json.loads(r.stdout.splitlines()[-1])


# ---- the control plane -------------------------------------------------------------------------------

def control_plane_render(work: Path, renders: int) -> dict:
    from controlplane import results
    from controlplane.console.app import create_app
    from controlplane.monitoring import alerts, probes

    data = work / "cp-data"
    data.mkdir()
    for name in probes.NAMES:
        results.record(data, f"probe.{name}", True, duration=0.01, detail="fine")
    results.record(data, "backup.create", True, bytes_added=123456)
    for level in ("L1", "L2", "L3", "L4"):
        results.record(data, f"backup.verify.{level}", True)
    results.record(data, "backup.restore_test", True, duration=12.5)
    results.record(data, "invariants", True, violations=0)
    results.record(data, "upgrade", True, stage="contract", started_at=time.time(), in_progress=False)
    jobs = [f"job.{i}" for i in range(30)]
    for j in jobs:
        results.record(data, f"scheduler.{j}", True, duration=0.1)
    alerts.record(data, {"alerts": [
        {"status": "firing", "labels": {"alertname": f"Alert{i}", "severity": ("page", "ticket", "info")[i % 3]},
         "annotations": {"summary": "s", "runbook_url": f"runbooks/Alert{i}.md"}, "startsAt": "2030-01-01T00:00:00Z",
         "fingerprint": f"fp{i}"} for i in range(50)]}, evidence=False)
    client = create_app({}, data_dir=data, job_ids=jobs).test_client()
    for _ in range(5):
        client.get("/metrics")
    times, cpu_times, text = [], [], ""
    for _ in range(renders):
        t0, c0 = time.perf_counter(), time.process_time()
        text = client.get("/metrics").get_data(as_text=True)
        times.append(time.perf_counter() - t0)
        cpu_times.append(time.process_time() - c0)
    series = sum(1 for line in text.splitlines() if line and not line.startswith("#"))
    return {"scrape": summary_ms(times), "scrape_cpu": summary_ms(cpu_times), "series": series,
            "bytes": len(text.encode())}


# ---- latency over HTTP -----------------------------------------------------------------------------

def latency_http(url: str, requests_n: int, port: int = 0) -> dict:
    env = dict(os.environ)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.Popen([sys.executable, __file__, "_latency_http", url, str(requests_n), str(port)],
                            stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        ports = json.loads(proc.stdout.readline())
        conns = {side: http.client.HTTPConnection("127.0.0.1", ports[side], timeout=60) for side in ("on", "off")}

        def call(side, method, path, body=None, headers=None):
            c = conns[side]
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            data = r.read()
            return r.status, data

        token = {}
        for side in conns:
            status, data = call(side, "POST", "/api/v1/auth/login",
                                json.dumps({"username": USER, "password": PASSWORD}),
                                {"Content-Type": "application/json"})
            token[side] = json.loads(data)["token"]
        status, data = call("off", "GET", "/api/v1/products?limit=5",
                            headers={"Authorization": f"Bearer {token['off']}"})
        paths = ["/api/v1/sales-orders?limit=20", f"/api/v1/products/{json.loads(data)['items'][0]['id']}"]
        times = {"on": [], "off": []}
        warm = 200
        for i in range(requests_n + warm):
            order = ("on", "off") if i % 2 == 0 else ("off", "on")
            path = paths[i % len(paths)]
            for side in order:
                t0 = time.perf_counter()
                status, _ = call(side, "GET", path, headers={"Authorization": f"Bearer {token[side]}"})
                dt_ = time.perf_counter() - t0
                if status != 200:
                    raise SystemExit(f"bench: {path} answered {status}")
                if i >= warm:
                    times[side].append(dt_)
        return {"on": summary_ms(times["on"]), "off": summary_ms(times["off"]), "paths": paths}
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)


def overhead(r: dict) -> dict:
    on, off = r["on"], r["off"]
    r["overhead_p50_ms"] = round(on["p50_ms"] - off["p50_ms"], 3)
    r["overhead_p50_pct"] = round(100 * (on["p50_ms"] - off["p50_ms"]) / off["p50_ms"], 2)
    r["overhead_p99_pct"] = round(100 * (on["p99_ms"] - off["p99_ms"]) / off["p99_ms"], 2)
    return r


# ---- main ----------------------------------------------------------------------------------------------

def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--renders", type=int, default=200, help="renders of each /metrics measured (default 200)")
    p.add_argument("--requests", type=int, default=3000, help="requests per side for the overhead (default 3000)")
    p.add_argument("--workers", type=int, default=4, help="worker processes for the multi-worker render (default 4)")
    p.add_argument("--port", type=int, default=0,
                   help="first of the two ports of the latency servers (default 0: free ports, so two runs can "
                        "share a machine)")
    p.add_argument("--cache", type=Path, default=CACHE,
                   help="where the seeded database is kept between runs (default %(default)s)")
    p.add_argument("--work", default=None, help="parent of the run's temporary directory (default: the temp dir)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    a = p.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="erpctl-bench-metrics-", dir=a.work))
    try:
        url = prepare_database(work, a.cache)
        out = {"cpus": os.cpu_count(), "load_average": [round(x, 2) for x in os.getloadavg()]}
        out["erp_single"] = run_child("_erp_render", url, a.renders, 1)
        mp = work / "prom"
        mp.mkdir()
        for _ in range(a.workers):
            run_child("_fill", url, env_extra={"PROMETHEUS_MULTIPROC_DIR": str(mp)})
        out["erp_multi"] = run_child("_erp_render", url, a.renders, 0, env_extra={"PROMETHEUS_MULTIPROC_DIR": str(mp)})
        out["erp_multi"]["workers"] = a.workers
        out["controlplane"] = control_plane_render(work, a.renders)
        out["latency_http"] = overhead(latency_http(url, a.requests, a.port))
        out["latency_wsgi"] = overhead(run_child("_latency_wsgi", url, a.requests))
        out["targets"] = {
            "erp_single_p50_ms<=25": out["erp_single"]["scrape"]["p50_ms"] <= TARGETS["erp_single_ms"],
            "erp_multi_p50_ms<=75": out["erp_multi"]["scrape"]["p50_ms"] <= TARGETS["erp_multi_ms"],
            "overhead_http_p50_pct<=3": out["latency_http"]["overhead_p50_pct"] <= TARGETS["overhead_pct"],
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if a.json:
        print(json.dumps(out, indent=1))
        return 0
    print(f"machine: {out['cpus']} CPUs, load average {out['load_average']}")
    for key, title in (("erp_single", "ERP /metrics, single process"),
                       ("erp_multi", f"ERP /metrics, multiprocess mode ({a.workers} workers' files + the renderer's)"),
                       ("controlplane", "control plane /metrics")):
        r = out[key]
        s = r["scrape"]
        extra = f"; instruments only p50 {r['instruments_only']['p50_ms']} ms" if "instruments_only" in r else ""
        print(f"{title}: {r['series']} series, {r['bytes'] / 1024:.0f} KiB; scrape p50 {s['p50_ms']} ms, "
              f"p99 {s['p99_ms']} ms (CPU p50 {r['scrape_cpu']['p50_ms']} ms){extra}")
    for key, title in (("latency_http", "request latency over HTTP (waitress, keep-alive)"),
                       ("latency_wsgi", "request latency in process (WSGI, no network)")):
        r = out[key]
        print(f"{title}: instrumented p50 {r['on']['p50_ms']} ms p99 {r['on']['p99_ms']} ms | "
              f"not instrumented p50 {r['off']['p50_ms']} ms p99 {r['off']['p99_ms']} ms | "
              f"overhead p50 {r['overhead_p50_ms']} ms = {r['overhead_p50_pct']} %, p99 {r['overhead_p99_pct']} %"
              + (f" ({r['queries_per_request']} queries/request)" if "queries_per_request" in r else ""))
        if "cpu_per_request_us" in r:
            c = r["cpu_per_request_us"]
            print(f"  CPU per request: instrumented {c['on']} us, not instrumented {c['off']} us; paired "
                  f"difference {c['paired_difference_us']} us = {c['overhead_pct']} %")
    print("targets: " + ", ".join(f"{k} {'met' if v else 'MISSED'}" for k, v in out["targets"].items()))
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1].startswith("_"):
        mode, args = sys.argv[1], sys.argv[2:]
        if mode == "_fill":
            print(json.dumps(child_fill(args[0])))
        elif mode == "_erp_render":
            print(json.dumps(child_erp_render(args[0], int(args[1]), args[2] == "1")))
        elif mode == "_latency_http":
            child_latency_http(args[0], int(args[1]), int(args[2]))
        elif mode == "_latency_wsgi":
            print(json.dumps(child_latency_wsgi(args[0], int(args[1]))))
        sys.exit(0)
    sys.exit(main())
