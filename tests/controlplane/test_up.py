"""`erpctl up` as a real process: first start with demo data, serving, clean stop on signals,
a second start on the same data directory, and refusals (taken port, unsupported schema)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
import requests

from tests.controlplane.cli_helpers import (LineProcess, env, erpctl, erpctl_path, free_ports, log_lines, ok,
                                            port_is_free)
from controlplane import __version__

START_TIMEOUT = 90  # first start migrates and seeds a year of demo data


class Up(LineProcess):
    """A running `erpctl up`, its stdout lines collected as they come."""

    def __init__(self, *args, tmp_path):
        super().__init__([erpctl_path(), *args], tmp_path / f"up-{time.monotonic_ns()}.stderr", env=env())

    @property
    def stderr(self) -> str:
        return self.log

    def wait_for_line(self, pattern: str, timeout: float = START_TIMEOUT) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                m = re.search(pattern, line)
                if m:
                    return m
            if self.proc.poll() is not None:
                self._reader.join(timeout=2)
                break
            time.sleep(0.05)
        for line in list(self.lines):
            if m := re.search(pattern, line):
                return m
        pytest.fail(f"no line matching {pattern!r} (exit {self.proc.poll()}):\n"
                    + "\n".join(self.lines) + "\n" + self.stderr)

    def wait_ready(self, url: str, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"erpctl up exited with {self.proc.returncode}:\n" + "\n".join(self.lines)
                            + "\n" + self.stderr)
            try:
                if requests.get(url, timeout=2).status_code == 200:
                    return
            except requests.RequestException:  # refused, or queued while the first start seeds
                pass
            time.sleep(0.1)
        pytest.fail(f"{url} not ready within {timeout}s:\n" + self.stderr)

    def stop(self, sig=signal.SIGTERM, timeout: float = 10) -> tuple[int, float]:
        t0 = time.monotonic()
        self.proc.send_signal(sig)
        rc = self.proc.wait(timeout=timeout)
        return rc, time.monotonic() - t0

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


@pytest.fixture
def up_factory(tmp_path):
    started = []

    def start(*args):
        u = Up(*args, tmp_path=tmp_path)
        started.append(u)
        return u

    yield start
    for u in started:
        u.close()


def test_up_demo_serves_and_stops_cleanly(tmp_path, up_factory):
    data = tmp_path / "data"
    erp_port, ops_port = free_ports(2)
    erp = f"http://127.0.0.1:{erp_port}"
    ops = f"http://127.0.0.1:{ops_port}"
    up = up_factory("up", "--demo", "--data-dir", data, "--erp-port", erp_port, "--ops-port", ops_port)

    up.wait_ready(erp + "/readyz")
    username, password = up.wait_for_line(r"Demo login: (\S+) / (\S+)").groups()
    out = "\n".join(up.lines)
    assert f"{erp}/" in out and f"{erp}/api/v1/openapi.json" in out and f"{ops}/" in out

    token = requests.post(erp + "/api/v1/auth/login", json={"username": username, "password": password},
                          timeout=10).json()["token"]
    orders = requests.get(erp + "/api/v1/sales-orders", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert orders.status_code == 200 and orders.json()["total"] > 0 and orders.json()["items"]
    assert requests.get(erp + "/api/v1/openapi.json", timeout=10).status_code == 200
    health = requests.get(ops + "/healthz", timeout=10)
    assert health.status_code == 200
    assert health.json() == {"status": "ok", "component": "controlplane", "version": __version__}

    # Secrets in the data directory are private; logs are JSON lines and carry no secret.
    for name in ("field.key", "demo-login.json"):
        assert (data / name).stat().st_mode & 0o777 == 0o600, name
    logs = [json.loads(line) for line in up.stderr.splitlines() if line.startswith("{")]
    assert any(rec["msg"] == "serving" for rec in logs)
    assert password not in up.stderr and (data / "field.key").read_text().strip() not in up.stderr

    rc, took = up.stop(signal.SIGTERM)
    assert rc == 0, up.stderr
    assert took < 5
    assert port_is_free(erp_port) and port_is_free(ops_port)
    assert "Traceback" not in up.stderr

    # A second start reuses everything: same login, no new demo data; SIGINT stops it as well.
    again = up_factory("--json", "up", "--demo", "--data-dir", data, "--erp-port", erp_port,
                       "--ops-port", ops_port)
    info = json.loads(again.wait_for_line(r"^\{.*\"event\": \"started\".*\}$").group(0))
    assert info["demo"]["username"] == username and info["demo"]["password"] == password
    assert info["demo"]["users_created"] == [] and info["demo"]["seeded"] is None
    assert info["migrated"] is None and info["erp_port"] == erp_port
    rc, took = again.stop(signal.SIGINT)
    assert rc == 0 and took < 5, again.stderr
    assert json.loads(again.lines[-1]) == {"event": "stopped", "signal": "SIGINT"}


def test_up_refuses_a_taken_port(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        t0 = time.monotonic()
        r = erpctl("up", "--data-dir", tmp_path / "data", "--erp-port", port, "--ops-port", 0, timeout=30)
        assert time.monotonic() - t0 < 15
    assert r.returncode == 11
    assert f"cannot listen on 127.0.0.1:{port} for the ERP" in r.stderr
    assert "--erp-port" in r.stderr  # the fix names the option
    assert "Traceback" not in r.stderr


def test_up_refuses_the_same_port_twice(tmp_path):
    port, = free_ports(1)
    r = erpctl("up", "--data-dir", tmp_path / "data", "--erp-port", port, "--ops-port", port, timeout=30)
    assert r.returncode == 11 and "ops console" in r.stderr and "--ops-port" in r.stderr


def test_up_refuses_an_unsupported_schema(tmp_path):
    data = tmp_path / "data"
    ok("erp", "migrate", "--data-dir", data)
    with sqlite3.connect(data / "erp.sqlite3") as c:  # as if a newer erpctl had contracted the schema
        c.execute("UPDATE alembic_version SET version_num = '9999_future'")
        c.execute("INSERT INTO erp_schema_migrations (revision, stage, applied_at) "
                  "VALUES ('9999_future', 'contract', '2030-01-01 00:00:00.000000')")
    r = erpctl("up", "--data-dir", data, "--erp-port", 0, "--ops-port", 0, timeout=30)
    assert r.returncode == 8
    assert "not supported" in r.stderr and "9999_future" in r.stderr and "fix:" in r.stderr


def test_up_with_erp_field_key_from_the_environment(tmp_path, up_factory):
    """ERP_FIELD_KEY overrides the key file: none is written."""
    data = tmp_path / "data"
    proc = subprocess.Popen([erpctl_path(), "--json", "up", "--data-dir", str(data), "--erp-port", "0",
                             "--ops-port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env(ERP_FIELD_KEY="an operator's own key"))
    try:
        info = json.loads(proc.stdout.readline())
        assert info["event"] == "started"
        assert requests.get(f"http://127.0.0.1:{info['ops_port']}/healthz", timeout=10).status_code == 200
        assert not (data / "field.key").exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err


# ---- serving a release (controlplane/release): `erpctl up` runs the current one as a child --------

@pytest.fixture(scope="session")
def tree_release(tmp_path_factory):
    """(wheel, version) of the release built from this source tree."""
    from tests.controlplane.release_helpers import tree_wheel_and_version

    return tree_wheel_and_version(tmp_path_factory)


def _release_data_dir(tmp_path, *wheels) -> Path:
    """A data directory with a copy of the 1.0 database, its field key, the releases installed and
    1.0 current."""
    from controlplane.config import write_private
    from tests.controlplane.test_release import DB_1_0, FIXTURE_KEY

    data = tmp_path / "data"
    for wheel in wheels:
        ok("release", "install", wheel, "--data-dir", data)
    shutil.copy(DB_1_0, data / "erp.sqlite3")
    write_private(data / "field.key", FIXTURE_KEY + "\n")
    ok("release", "current", "1.0.0", "--data-dir", data)
    return data


def _until(what: str, check, timeout: float = 30):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except (requests.RequestException, OSError, ValueError, KeyError) as exc:
            last = exc
        time.sleep(0.2)
    pytest.fail(f"{what}: not within {timeout}s (last: {last!r})")


def _erp_version(erp: str) -> str:
    r = requests.get(erp + "/healthz", timeout=3)
    return r.json()["version"] if r.status_code == 200 else ""


def _serving(data) -> dict:
    return json.loads((data / "releases" / "serving.json").read_text())


def test_up_serves_the_current_release_restarts_it_and_stops_it(tmp_path, up_factory):
    from tests.controlplane.test_release import FIXTURE_ADMIN, WHEEL_1_0, login

    data = _release_data_dir(tmp_path, WHEEL_1_0)
    erp_port, ops_port = free_ports(2)
    erp = f"http://127.0.0.1:{erp_port}"
    up = up_factory("--json", "up", "--data-dir", data, "--erp-port", erp_port, "--ops-port", ops_port)
    info = json.loads(up.wait_for_line(r"^\{.*\"event\": \"started\".*\}$").group(0))
    assert info["release"]["version"] == "1.0.0" and info["erp_version"] == "1.0.0"
    assert info["schema_revision"] == "0001" and info["erp_port"] == erp_port
    first = info["release"]["pid"]
    assert first != up.proc.pid and "releases/1.0.0/env/bin/python" in Path(f"/proc/{first}/cmdline").read_text()

    # The 1.0 code serves the 1.0 database.
    assert requests.get(erp + "/healthz", timeout=5).json() == {"status": "ok", "version": "1.0.0"}
    token = login(erp, *FIXTURE_ADMIN)
    orders = requests.get(erp + "/api/v1/sales-orders", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert orders.status_code == 200 and orders.json()["total"] == 163
    status = json.loads(erpctl("--json", "status", "--data-dir", data).stdout)
    assert status["release"]["current"] == "1.0.0"
    assert status["release"]["serving"]["version"] == "1.0.0" and status["release"]["serving"]["pid"] == first

    # Killed, it is restarted (after a back-off) and serves again on the same port.
    os.kill(first, signal.SIGKILL)
    second = _until("a restarted ERP", lambda: (lambda s: s["state"] == "serving" and s["pid"] != first
                                                and _erp_version(erp) == "1.0.0" and s["pid"])(_serving(data)))
    assert _serving(data)["restarts"] == 1
    assert any(rec["msg"] == "the ERP exited unexpectedly: restarting it" and rec["returncode"] == -9
               for rec in log_lines(up.stderr))
    assert requests.get(erp + "/api/v1/sales-orders", headers={"Authorization": f"Bearer {token}"},
                        timeout=10).status_code == 200

    rc, took = up.stop(signal.SIGTERM)
    assert rc == 0 and took < 10, up.stderr
    assert not Path(f"/proc/{second}").exists() and port_is_free(erp_port) and port_is_free(ops_port)
    assert _serving(data)["state"] == "stopped"
    ours = [rec for rec in log_lines(up.stderr) if rec["logger"] in ("controlplane.up", "controlplane.erp")]
    assert not any(rec.get("exc") or rec["level"] == "error" for rec in ours), ours


def test_up_follows_current_through_an_upgrade_and_a_rollback(tmp_path, up_factory, tree_release):
    """An upgrade moves code and schema together while `erpctl up` runs: expand (and backfill) with the new
    release's migrations while 1.0 serves, switch current to the new release, then back to 1.0 (a
    rollback before the contract step). `up` follows each switch within seconds, on the same port."""
    from controlplane import config, release
    from tests.controlplane.test_release import FIXTURE_ADMIN, WHEEL_1_0, login

    tree_wheel, tree_version = tree_release
    data = _release_data_dir(tmp_path, WHEEL_1_0, tree_wheel)
    erp_port, ops_port = free_ports(2)
    erp = f"http://127.0.0.1:{erp_port}"
    up = up_factory("up", "--data-dir", data, "--erp-port", erp_port, "--ops-port", ops_port)
    up.wait_ready(erp + "/readyz")
    assert _erp_version(erp) == "1.0.0"
    assert up.wait_for_line(r"Release\s+1\.0\.0 serves the ERP")

    # The new code cannot run on the 1.0 schema: switching by hand is refused, 1.0 keeps serving.
    refused = erpctl("release", "current", tree_version, "--data-dir", data)
    assert refused.returncode == 38 and "older than the code's" in refused.stderr

    # Expand and backfill with the new release's own migrations (every step before its contract step).
    t = config.resolve(data)
    new = release.get(t, tree_version)
    stages = [m["stage"] for m in new.migrations]
    keep = len(stages)
    while keep and stages[keep - 1] == "contract":
        keep -= 1
    expanded = new.migrations[keep - 1]["revision"]
    assert release.migrate_with(t, new, expanded)["to_revision"] == expanded
    assert requests.get(erp + "/readyz", timeout=5).status_code == 200  # 1.0 runs on the expanded schema
    assert release.check_database(t, new)["supported"] and release.check_database(t, release.get(t, "1.0.0"))["supported"]

    switched = ok("release", "current", tree_version, "--data-dir", data)
    assert "does not migrate" in switched.stdout
    _until(f"release {tree_version} serving", lambda: _erp_version(erp) == tree_version, timeout=30)
    # `up` publishes what it serves once its own check of the new ERP has passed: a moment later
    _until(f"release {tree_version} published as serving",
           lambda: _serving(data)["version"] == tree_version and _serving(data)["state"] == "serving", timeout=10)
    token = login(erp, *FIXTURE_ADMIN)
    orders = requests.get(erp + "/api/v1/sales-orders", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert orders.status_code == 200 and orders.json()["total"] == 163
    assert requests.get(erp + "/readyz", timeout=5).status_code == 200

    ok("release", "current", "1.0.0", "--reason", "rollback", "--data-dir", data)
    _until("release 1.0.0 serving again", lambda: _erp_version(erp) == "1.0.0", timeout=30)
    switches = [rec for rec in log_lines(up.stderr) if rec["msg"] == "switching release"]
    assert [(s["from"], s["to"]) for s in switches] == [("1.0.0", tree_version), (tree_version, "1.0.0")]

    rc, _ = up.stop(signal.SIGTERM)
    assert rc == 0, up.stderr
    assert port_is_free(erp_port)


def test_up_refuses_what_the_current_release_cannot_serve(tmp_path):
    """The current release's own code judges the schema; a taken ERP port fails before any work."""
    from tests.controlplane.test_release import WHEEL_1_0, contract_future_schema

    data = _release_data_dir(tmp_path, WHEEL_1_0)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = erpctl("up", "--data-dir", data, "--erp-port", port, "--ops-port", 0, timeout=30)
    assert r.returncode == 11 and f"cannot listen on 127.0.0.1:{port} for the ERP" in r.stderr

    contract_future_schema(data / "erp.sqlite3")
    r = erpctl("up", "--data-dir", data, "--erp-port", 0, "--ops-port", 0, timeout=60)
    assert r.returncode == 8, r.stderr
    assert "not supported by release 1.0.0" in r.stderr and "9999_future" in r.stderr and "fix:" in r.stderr
    assert not (data / "releases" / "serving.json").exists()  # no ERP was started
