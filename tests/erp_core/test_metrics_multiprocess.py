"""The ERP's metrics under several worker processes (prometheus-client multiprocess mode): whichever
worker answers /metrics, it reports the requests of all of them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from prometheus_client import multiprocess

from tests.conftest import FIELD_KEY, PASSWORD, fresh_database_url
from tests.controlplane.monitoring.helpers import families, promtool_check_metrics, sample

ROOT = Path(__file__).resolve().parents[2]

WORKER = """
import json, os, sys
from erp_core.app import create_app
from erp_core.config import Settings
url, key, password, requests_n, scrape = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5] == "1"
app = create_app(Settings(url, field_key=key, testing=True))
c = app.test_client()
token = c.post("/api/v1/auth/login", json={"username": "sales", "password": password}).json["token"]
for _ in range(requests_n):
    assert c.get("/api/v1/sales-orders", headers={"Authorization": "Bearer " + token}).status_code == 200
    assert c.get("/healthz").status_code == 200
out = {"pid": os.getpid()}
if scrape:
    out["idle"] = app.extensions["erp_db"].engine.pool.checkedin()
    out["metrics"] = c.get("/metrics").get_data(as_text=True)
print(json.dumps(out))
"""


def run_worker(script, url, n, env, scrape=False) -> dict:
    r = subprocess.run([sys.executable, str(script), url, FIELD_KEY, PASSWORD, str(n), "1" if scrape else "0"],
                       capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.splitlines()[-1])


def test_counters_and_histograms_add_up_across_workers(tmp_path, request):
    url = fresh_database_url("sqlite", request, tmp_path)
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    mp_dir = tmp_path / "prom"
    mp_dir.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(mp_dir), "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, str(script), url, FIELD_KEY, PASSWORD, str(n), "0"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
             for n in (3, 5)]
    pids = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        pids.append(json.loads(out.splitlines()[-1])["pid"])
    # The server tells prometheus-client about workers that exited (gunicorn: child_exit).
    for pid in pids:
        multiprocess.mark_process_dead(pid, str(mp_dir))

    scraper = run_worker(script, url, 1, env, scrape=True)
    text = scraper["metrics"]
    fams = families(text)
    # 3 + 5 + 1 requests of each kind, in three processes, all counted by the one that answered.
    assert sample(fams, "erp_http_requests_total", method="GET", route="/api/v1/sales-orders", status="200") == 9
    assert sample(fams, "erp_http_requests_total", method="GET", route="/healthz", status="200") == 9
    assert sample(fams, "erp_http_requests_total", method="POST", route="/api/v1/auth/login", status="200") == 3
    assert sample(fams, "erp_http_request_duration_seconds", "erp_http_request_duration_seconds_count",
                  method="GET", route="/api/v1/sales-orders") == 9
    assert sample(fams, "erp_db_query_duration_seconds", "erp_db_query_duration_seconds_count") > 9
    # Pool gauges: only live processes (the dead workers' files were dropped), summed without a pid label.
    pool = {s.labels["state"]: s for s in fams["erp_db_pool_connections"].samples}
    assert set(pool) == {"in_use", "idle"} and "pid" not in pool["idle"].labels
    assert pool["in_use"].value == 0 and pool["idle"].value == scraper["idle"] >= 1
    assert sample(fams, "erp_database_up") == 1 and sample(fams, "erp_low_stock_products") == 0
    assert sorted(p.name.split("_")[0] for p in mp_dir.glob("*.db")).count("counter") == 3
    promtool_check_metrics(text)


def _canonical(registry) -> set:
    from prometheus_client import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    return {(f.name, f.type, f.documentation, s.name, tuple(sorted(s.labels.items())), s.value)
            for f in text_string_to_metric_families(generate_latest(registry).decode()) for s in f.samples}


def test_the_fast_merge_equals_prometheus_clients(tmp_path, request):
    """erp_core.metrics.MultiProcessFiles gives exactly what upstream's MultiProcessCollector gives,
    on first read, after the files grew, and with a file of a kind it leaves to upstream."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    from erp_core.metrics import MultiProcessFiles

    url = fresh_database_url("sqlite", request, tmp_path)
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    mp_dir = tmp_path / "prom"
    mp_dir.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(mp_dir), "PYTHONPATH": str(ROOT)}
    run_worker(script, url, 2, env)
    upstream = CollectorRegistry()
    MultiProcessCollector(upstream, path=str(mp_dir))
    fast = CollectorRegistry()
    collector = MultiProcessFiles(str(mp_dir))
    fast.register(collector)
    first = _canonical(upstream)
    assert first and _canonical(fast) == first
    run_worker(script, url, 3, env)  # new keys in new files; the index follows
    assert _canonical(fast) == _canonical(upstream) != first
    # A kind of file the ERP does not write (a gauge in "all" mode): upstream's merge does it.
    livesum = next(mp_dir.glob("gauge_livesum_*"))
    (mp_dir / "gauge_all_99999.db").write_bytes(livesum.read_bytes())
    assert _canonical(fast) == _canonical(upstream)
