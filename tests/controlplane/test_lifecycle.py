"""erpctl stop and erpctl restart against real `erpctl up` processes: two installations on one machine,
a PostgreSQL installation restarted on its own database and ports, a hung ERP, an ERP left behind by a
killed erpctl up, and nothing running at all."""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from pathlib import Path

import pytest
import requests
from sqlalchemy import text

from controlplane import procs
from controlplane.lifecycle.stop import DEFAULT_TIMEOUT_SECONDS
from tests.conftest import PG_ADMIN_URL, reachable_pg_admin
from tests.controlplane.cli_helpers import (PASSWORD, LineProcess, env, erpctl, erpctl_path, free_ports, ok,
                                            port_is_free)

START_TIMEOUT = 90


class Up(LineProcess):
    """`erpctl up` on its own data directory and free ports, started as an operator would."""

    def __init__(self, data_dir: Path, *extra, **env_extra):
        self.data_dir = data_dir
        self.erp_port, self.ops_port = free_ports(2)
        data_dir.parent.mkdir(parents=True, exist_ok=True)
        super().__init__([erpctl_path(), "up", "--data-dir", data_dir, "--erp-port", self.erp_port,
                          "--ops-port", self.ops_port, *extra], data_dir.parent / f"{data_dir.name}-up.stderr",
                         env=env(**env_extra))
        self.erp = f"http://127.0.0.1:{self.erp_port}"
        wait_ready(self.erp, START_TIMEOUT, self)

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


def wait_ready(erp: str, timeout: float, up: Up | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if up is not None and up.proc.poll() is not None:
            pytest.fail(f"erpctl up exited with {up.proc.returncode}:\n{up.log}")
        try:
            if requests.get(erp + "/readyz", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    pytest.fail(f"{erp}/readyz not ready within {timeout} s" + (f":\n{up.log}" if up else ""))


def ready(erp: str) -> bool:
    try:
        return requests.get(erp + "/readyz", timeout=5).status_code == 200
    except requests.RequestException:
        return False


def runtime(data_dir: Path) -> dict:
    return json.loads((data_dir / "runtime.json").read_text())


def evidence(data_dir: Path) -> list[dict]:
    path = data_dir / "evidence.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def serving_child(data_dir: Path, up_pid: int, timeout: float = 30) -> int:
    """The pid of the ERP child the `erpctl up` `up_pid` serves (serving.json)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            serving = json.loads((data_dir / "releases" / "serving.json").read_text())
            if serving.get("erpctl_pid") == up_pid and serving.get("state") == "serving":
                return int(serving["pid"])
        except (OSError, ValueError):
            pass
        time.sleep(0.1)
    pytest.fail(f"erpctl up {up_pid} published no serving ERP")


@pytest.fixture
def ups(tmp_path):
    """Start `erpctl up`s; every data directory is stopped with erpctl stop at the end (restart starts
    processes this test does not own)."""
    started: list[Up] = []

    def start(name: str, *extra, **env_extra) -> Up:
        up = Up(tmp_path / name, *extra, **env_extra)
        started.append(up)
        return up

    yield start
    for up in started:
        erpctl("stop", "--data-dir", up.data_dir, "--timeout", "5", timeout=60)
        up.close()


def test_stop_stops_only_its_own_installation_and_waits_for_its_exit(ups):
    a, b = ups("a"), ups("b")
    r = ok("--json", "stop", "--data-dir", a.data_dir)
    out = json.loads(r.stdout)
    assert out["stopped"] and out["was_running"] and out["pid"] == a.proc.pid and out["signal"] == "SIGTERM"
    assert a.proc.poll() == 0, "erpctl stop returned before erpctl up had exited"
    assert port_is_free(a.erp_port) and port_is_free(a.ops_port)
    assert b.proc.poll() is None and ready(b.erp), "the other installation was touched"
    assert runtime(a.data_dir)["running"] is False and runtime(b.data_dir)["running"] is True
    assert [e["kind"] for e in evidence(a.data_dir)][-1] == "erpctl.stop"
    assert "erpctl.stop" not in [e["kind"] for e in evidence(b.data_dir)]

    again = ok("stop", "--data-dir", a.data_dir)
    assert again.stdout.startswith("nothing to stop") and "has ended" in again.stdout
    assert b.proc.poll() is None and ready(b.erp)

    # A restart in maintenance mode comes back in maintenance mode, and says so.
    ok("erp", "maintenance", "on", "--reason", "stock count", "--data-dir", b.data_dir)
    r = ok("restart", "--data-dir", b.data_dir, timeout=240)
    assert "maintenance mode is on (stock count)" in r.stdout and b.erp in r.stdout
    assert b.proc.poll() == 0 and port_is_free(a.erp_port)
    assert requests.get(b.erp + "/readyz", timeout=5).json()["checks"]["maintenance"]["enabled"] is True

    # erpctl up itself stopped (SIGSTOP): it is woken to handle SIGTERM and stops cleanly.
    hung = runtime(b.data_dir)["pid"]
    os.kill(hung, signal.SIGSTOP)
    out = json.loads(ok("--json", "stop", "--data-dir", b.data_dir, "--timeout", "20").stdout)
    assert out["pid"] == hung and out["signal"] == "SIGTERM" and port_is_free(b.erp_port)


def test_stop_when_nothing_runs_exits_0_and_creates_nothing(tmp_path):
    r = ok("--json", "stop", "--data-dir", tmp_path / "never")
    assert json.loads(r.stdout)["stopped"] is False and not (tmp_path / "never").exists()


@pytest.fixture
def pg_url(request):
    """An empty PostgreSQL database (dropped at the end); its URL carries a password (trust auth ignores
    it) so that the test sees where it is kept and where not."""
    admin = reachable_pg_admin()
    name = f"erpctl_restart_{uuid.uuid4().hex[:10]}"
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))

    def drop():
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    request.addfinalizer(drop)
    server = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgres@", "postgres:s3cret-pw@", 1)
    return f"{server}/{name}"


@pytest.mark.postgres
def test_restart_of_a_postgresql_installation_serves_the_same_database_on_the_same_ports(ups, pg_url):
    up = ups("pg", "--database-url", pg_url)
    d = up.data_dir
    ok("erp", "user", "add", "alice", "--role", "admin", "--password-stdin", "--data-dir", d, "--database-url", pg_url,
       input=PASSWORD)
    recorded = (d / "runtime.json").read_text()
    assert "s3cret-pw" not in recorded and json.loads(recorded)["database_backend"] == "postgresql"

    refused = erpctl("restart", "--data-dir", d, timeout=120)  # no URL in this shell: never an empty SQLite
    assert refused.returncode == 51 and "empty SQLite" in refused.stderr and "ERPCTL_DATABASE_URL" in refused.stderr
    assert up.proc.poll() is None and ready(up.erp), "a refused restart stopped erpctl up"

    r = erpctl("--json", "restart", "--data-dir", d, timeout=240, ERPCTL_DATABASE_URL=pg_url)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert up.proc.poll() == 0 and out["stopped"]["pid"] == up.proc.pid
    assert out["erp_url"] == up.erp and out["ops_url"] == f"http://127.0.0.1:{up.ops_port}/"
    assert runtime(d)["pid"] == out["pid"] and procs.erpctl_up_data_dir(out["pid"], "x") == d.resolve()
    assert "s3cret-pw" not in " ".join(procs.cmdline(out["pid"]) or []), "the password is on the command line"
    login = requests.post(up.erp + "/api/v1/auth/login", json={"username": "alice", "password": PASSWORD}, timeout=10)
    assert login.status_code == 200, "the restarted ERP does not serve the database the user was added to"
    assert not (d / "erp.sqlite3").exists()
    assert requests.get(f"http://127.0.0.1:{up.ops_port}/healthz", timeout=5).status_code == 200
    assert evidence(d)[-1]["kind"] == "erpctl.restart" and evidence(d)[-1]["outcome"] == "ok"
    assert "s3cret-pw" not in (d / "evidence.jsonl").read_text()


def test_restart_of_a_hung_erp_and_stop_of_one_left_behind(ups):
    up = ups("hung")
    d = up.data_dir
    child = serving_child(d, up.proc.pid)
    os.kill(child, signal.SIGSTOP)  # the ERP hangs: it answers nothing, not even SIGTERM
    child_ticks = procs.start_ticks(child)
    r = erpctl("--json", "restart", "--data-dir", d, timeout=240)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert up.proc.poll() == 0 and out["stopped"]["signal"] == "SIGTERM"  # erpctl up killed its ERP itself
    assert out["stopped"]["seconds"] < DEFAULT_TIMEOUT_SECONDS
    assert not procs.is_same(child, child_ticks) and ready(up.erp)
    assert out["erp_url"] == up.erp and out["down_seconds"] > out["stopped"]["seconds"]

    # erpctl up killed while its ERP hangs: the ERP keeps the port until erpctl stop ends it too.
    new_up = out["pid"]
    child = serving_child(d, new_up)
    os.kill(child, signal.SIGSTOP)
    os.kill(new_up, signal.SIGKILL)
    assert procs.wait_gone(new_up, None, 10)
    assert not port_is_free(up.erp_port)
    stopped = json.loads(ok("--json", "stop", "--data-dir", d).stdout)
    assert stopped["was_running"] is False and stopped["erp_child"]["pid"] == child
    assert port_is_free(up.erp_port)
    assert runtime(d)["running"] is False and "had ended" in runtime(d)["stopped_by"]  # the killed one could not say
    assert [e["kind"] for e in evidence(d)][-2:] == ["erpctl.restart", "erpctl.stop"]


def test_stop_of_an_erpctl_up_that_is_still_starting(tmp_path):
    """erpctl up records itself before it serves (demo data can take a minute): stop finds it then too."""
    d, pause = tmp_path / "starting", tmp_path / "paused"
    erp_port, ops_port = free_ports(2)
    up = LineProcess([erpctl_path(), "up", "--data-dir", d, "--erp-port", erp_port, "--ops-port", ops_port],
                     tmp_path / "up.stderr", env=env(ERPCTL_FAILPOINTS=f"up.prepared=pause:{pause}"))
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not pause.exists():
            assert up.proc.poll() is None and time.monotonic() < deadline, up.log
            time.sleep(0.1)
        assert runtime(d)["pid"] == up.proc.pid and runtime(d)["running"] is False
        out = json.loads(ok("--json", "stop", "--data-dir", d).stdout)
        assert out["was_running"] and out["pid"] == up.proc.pid and out["signal"] == "SIGTERM"
        assert up.proc.poll() == 130 and "before the ERP was serving" in up.log
        assert port_is_free(erp_port) and port_is_free(ops_port) and runtime(d)["stopped_at"]
    finally:
        pause.unlink(missing_ok=True)
        if up.proc.poll() is None:
            up.proc.kill()
            up.proc.wait()
