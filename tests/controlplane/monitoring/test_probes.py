"""The probes against a real ERP served over HTTP on a fresh database."""

from __future__ import annotations

import shutil
import time

import pytest

from controlplane import results
from controlplane.monitoring import credentials, probes
from erp_core.services import maintenance
from tests.conftest import fresh_database_url

from .conftest import start_live_erp


def login(live):
    return lambda: credentials.probe_login(live.data_dir)


def test_readyz_probe_ok_then_not_ready_in_maintenance_then_down(live_erp):
    probe = probes.ReadyzProbe(live_erp.url)
    r = probes.run(probe, live_erp.data_dir)
    assert r.ok and r.detail == "ready" and 0 < r.duration < 5
    stored = results.read(live_erp.data_dir)["probe.readyz"]
    assert stored.ok and stored.value("duration") == r.duration

    with live_erp.erp.db.session() as s:
        maintenance.set_state(s, True, "test")
    r = probes.run(probe, live_erp.data_dir)
    assert not r.ok and "503" in r.detail and "maintenance" in r.detail
    assert results.read(live_erp.data_dir)["probe.readyz"].ok is False

    live_erp.server.stop(timeout=2)
    r = probes.run(probe, live_erp.data_dir)
    assert not r.ok and "refused" in r.detail.lower()


def test_business_probe_reads_an_order_and_the_trial_balance(live_erp):
    e = live_erp.erp
    wh, cust, prod = e.warehouse(), e.customer(), e.product()
    order = e.post("/sales-orders", {"partner_id": cust, "warehouse_id": wh,
                                     "lines": [{"product_id": prod, "quantity": "2"}]}, role="sales")
    probe = probes.BusinessProbe(live_erp.url, login(live_erp))
    r = probes.run(probe, live_erp.data_dir)
    assert r.ok, r.detail
    assert order["number"] in r.detail and "trial balance" in r.detail

    # The token is kept between runs; a revoked one is renewed by logging in again.
    token = probe._token
    assert probes.run(probe).ok and probe._token == token
    assert probes.http_json("POST", live_erp.url + "/api/v1/auth/logout", {}, token=token)[0] == 204
    assert probes.run(probe).ok and probe._token != token


def test_business_probe_on_an_empty_erp_and_with_a_wrong_password(live_erp):
    r = probes.run(probes.BusinessProbe(live_erp.url, login(live_erp)))
    assert r.ok and "no sales orders yet" in r.detail

    wrong = probes.BusinessProbe(live_erp.url, lambda: {"username": credentials.PROBE_USER,
                                                         "password": "not the password"})
    r = probes.run(wrong, live_erp.data_dir)
    assert not r.ok and "login as 'erpctl-probe' failed" in r.detail and "401" in r.detail


def test_probe_user_reads_only_and_survives_a_new_data_dir(live_erp, tmp_path):
    assert credentials.ensure_probe_user(live_erp.erp.db, live_erp.data_dir)["state"] == "exists"
    mine = credentials.probe_login(live_erp.data_dir)
    # A second installation on the same database (another app host) gets a probe user of its own: the
    # first one's password is left alone.
    other = tmp_path / "other"
    other.mkdir()
    assert credentials.ensure_probe_user(live_erp.erp.db, other)["state"] == "created"
    assert credentials.probe_login(other)["username"] != mine["username"]
    assert (other / credentials.PROBE_LOGIN_FILE).stat().st_mode & 0o777 == 0o600
    assert probes.run(probes.BusinessProbe(live_erp.url, lambda: mine)).ok
    # A data directory rebuilt in place (its login file lost) takes its user back with a new password.
    (other / credentials.PROBE_LOGIN_FILE).unlink()
    assert credentials.ensure_probe_user(live_erp.erp.db, other)["state"] == "password reset"
    probe = probes.BusinessProbe(live_erp.url, lambda: credentials.probe_login(other))
    assert probes.run(probe).ok
    status, _ = probes.http_json("POST", live_erp.url + "/api/v1/warehouses", {"code": "X", "name": "X"},
                                 token=probe._token)
    assert status == 403  # the auditor role changes nothing


def test_db_integrity_probe_sqlite_ok_and_corrupt(live_erp, tmp_path):
    r = probes.run(probes.DbIntegrityProbe(live_erp.target.database_url), live_erp.data_dir)
    assert r.ok and r.detail == "quick_check ok"

    broken = tmp_path / "broken.sqlite3"
    live_erp.erp.db.engine.dispose()
    shutil.copy(live_erp.target.sqlite_path, broken)
    raw = bytearray(broken.read_bytes())
    page = 4096
    for i in range(3 * page, min(len(raw), 12 * page), 97):  # scribble over b-tree pages, keep the header
        raw[i] = (raw[i] + 113) % 256
    broken.write_bytes(bytes(raw))
    r = probes.run(probes.DbIntegrityProbe(f"sqlite:///{broken}"))
    assert not r.ok and r.detail

    r = probes.run(probes.DbIntegrityProbe(f"sqlite:///{tmp_path / 'missing.sqlite3'}"))
    assert not r.ok and "no SQLite database" in r.detail


@pytest.mark.postgres
def test_db_integrity_probe_postgres(request, tmp_path):
    url = fresh_database_url("postgres", request, tmp_path)
    probe = probes.DbIntegrityProbe(url)
    try:
        r = probes.run(probe)
        assert r.ok and "catalog ok" in r.detail, r.detail
    finally:
        probe.close()
    r = probes.run(probes.DbIntegrityProbe("postgresql://nobody@127.0.0.1:1/none"))
    assert not r.ok


@pytest.mark.postgres
def test_readyz_and_business_probes_on_postgres(request, tmp_path):
    live = start_live_erp("postgres", request, tmp_path)
    assert probes.run(probes.ReadyzProbe(live.url)).ok
    assert probes.run(probes.BusinessProbe(live.url, login(live))).ok


def test_backup_freshness_probe(tmp_path):
    probe = probes.BackupFreshnessProbe(tmp_path, max_age_seconds=3600)
    r = probes.run(probe, tmp_path)
    assert not r.ok and "no successful backup" in r.detail
    results.record(tmp_path, "backup.create", True, bytes_added=123)
    assert probes.run(probe, tmp_path).ok
    results.record(tmp_path, "backup.create", False, error="store unreachable")  # the last success still counts
    assert probes.run(probe, tmp_path).ok
    data = __import__("json").loads((tmp_path / results.FILE).read_text())
    data["results"]["backup.create.last_success"]["at"] = time.time() - 7200
    (tmp_path / results.FILE).write_text(__import__("json").dumps(data))
    r = probes.run(probe, tmp_path)
    assert not r.ok and "2.0 h old" in r.detail


def test_disk_headroom_probe(tmp_path):
    assert probes.run(probes.DiskHeadroomProbe(tmp_path, min_free_bytes=1)).ok
    r = probes.run(probes.DiskHeadroomProbe(tmp_path, min_free_bytes=1 << 60), tmp_path)
    assert not r.ok and "GiB free" in r.detail
    assert results.read(tmp_path)["probe.disk_headroom"].ok is False


def test_a_probe_that_crashes_is_a_failure_with_its_reason(tmp_path):
    class Broken:
        name = "readyz"

        def check(self):
            raise RuntimeError("boom")

    r = probes.run(Broken(), tmp_path)
    assert not r.ok and r.detail == "RuntimeError: boom"
    assert results.read(tmp_path)["probe.readyz"].value("detail") == "RuntimeError: boom"
