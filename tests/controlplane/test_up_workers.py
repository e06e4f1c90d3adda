"""`erpctl up` serving the ERP with several worker processes (erp_workers): the requests are served by
distinct workers, /metrics (whichever worker answers it) counts the requests of all of them, and a
worker killed with SIGKILL is replaced while the port keeps taking connections."""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import requests

from tests.controlplane.cli_helpers import free_ports
from tests.controlplane.test_up import _serving, _until, up_factory  # noqa: F401 - fixture

HEALTHZ = 'erp_http_requests_total{method="GET",route="/healthz",status="200"}'


def _workers(master: int) -> set[int]:
    return {p.pid for p in psutil.Process(master).children() if p.status() != psutil.STATUS_ZOMBIE}


def _metrics_dir(master: int) -> Path:
    env = dict(line.split("=", 1) for line in Path(f"/proc/{master}/environ").read_text().split("\0") if "=" in line)
    return Path(env["PROMETHEUS_MULTIPROC_DIR"])


def _healthz_count(text: str) -> float:
    (line,) = [ln for ln in text.splitlines() if ln.startswith(HEALTHZ + " ")]
    return float(line.split()[1])


def _counted_by(metrics_dir: Path, pid: int, tmp: Path) -> float:
    """The /healthz requests one worker counted: its own file, merged alone."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    alone = tmp / f"alone-{pid}"
    alone.mkdir(parents=True)
    shutil.copy(metrics_dir / f"counter_{pid}.db", alone)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(alone))
    return _healthz_count(generate_latest(registry).decode())


def _burst(erp: str, n: int = 64) -> None:
    """n requests from 16 clients at once, each on a new connection (so any worker may accept it)."""
    with ThreadPoolExecutor(16) as pool:
        assert all(pool.map(lambda _: requests.get(erp + "/healthz", timeout=30).ok, range(n)))


def test_two_workers_serve_and_metrics_add_up_and_a_killed_worker_is_replaced(tmp_path, up_factory,  # noqa: F811
                                                                              monkeypatch):
    monkeypatch.setenv("ERPCTL_ERP_WORKERS", "2")
    monkeypatch.setenv("ERPCTL_ERP_THREADS", "4")
    erp_port, ops_port = free_ports(2)
    erp = f"http://127.0.0.1:{erp_port}"
    up = up_factory("--json", "up", "--data-dir", tmp_path / "data", "--erp-port", erp_port, "--ops-port", ops_port)
    up.wait_for_line(r"^\{.*\"event\": \"started\".*\}$")
    serving = _serving(tmp_path / "data")
    master = serving["pid"]
    assert serving["workers"] == 2 and serving["threads"] == 4
    workers = _until("two workers", lambda: (lambda w: len(w) == 2 and w)(_workers(master)))
    metrics_dir = _metrics_dir(master)

    # Both workers serve: each has counted requests of its own.
    def both_served():
        _burst(erp)
        return all((metrics_dir / f"counter_{pid}.db").exists() for pid in workers)
    _until("requests served by both workers", both_served, timeout=60)
    per_worker = {pid: _counted_by(metrics_dir, pid, tmp_path / "before") for pid in workers}
    assert all(n > 0 for n in per_worker.values()), per_worker
    # /metrics, whichever worker answers it, counts both workers' requests (erpctl up's own /healthz checks
    # may add one meanwhile: the sum is read before and after the scrape)
    scraped = _healthz_count(requests.get(erp + "/metrics", timeout=10).text)
    after = sum(_counted_by(metrics_dir, pid, tmp_path / "after") for pid in workers)
    assert sum(per_worker.values()) <= scraped <= after, (per_worker, scraped, after)

    # A worker killed with SIGKILL: its master starts another; the port refuses no connection meanwhile.
    refused, answered, stop = [], [], threading.Event()

    def client():
        while not stop.is_set():
            try:
                answered.append(requests.get(erp + "/healthz", timeout=30).status_code)
            except requests.ConnectionError as exc:
                if "refused" in str(exc).lower():
                    refused.append(exc)
    clients = [threading.Thread(target=client) for _ in range(4)]
    for t in clients:
        t.start()
    try:
        victim = min(workers)
        time.sleep(0.5)
        os.kill(victim, signal.SIGKILL)
        replaced = _until("the killed worker replaced",
                          lambda: (lambda w: len(w) == 2 and victim not in w and w)(_workers(master)), timeout=60)
        before = len(answered)
        _until("the new worker serving too", lambda: len(answered) > before + 20, timeout=30)
    finally:
        stop.set()
        for t in clients:
            t.join(timeout=60)
    assert refused == [] and answered and set(answered) == {200}, (refused[:3], set(answered))
    assert _serving(tmp_path / "data")["pid"] == master and _serving(tmp_path / "data")["restarts"] == 0
    (new,) = replaced - workers
    _until("the new worker counting", lambda: (_burst(erp), (metrics_dir / f"counter_{new}.db").exists())[1],
           timeout=60)
    # the killed worker's requests still count (its file stays, marked dead by the master)
    total = _healthz_count(requests.get(erp + "/metrics", timeout=10).text)
    assert total >= sum(per_worker.values()) + len(answered), (total, per_worker, len(answered))

    rc, _ = up.stop(signal.SIGTERM, timeout=30)
    assert rc == 0 and not metrics_dir.exists(), up.stderr
    assert not any(Path(f"/proc/{pid}").exists() for pid in replaced | {master})
    assert _serving(tmp_path / "data")["state"] == "stopped"
