"""End to end, all real: the data directory of an installation on a small filesystem (a tmpfs) that
fills up. `erpctl up`, started in the background by `erpctl restart` as an operator would, serves the
ERP on SQLite there and appends its output to erpctl-up.log; that log grows until the disk is full.
DiskSpaceLow must page the person on call (real Prometheus and Alertmanager with the shipped rules
and routes, tests/monitors/alerting.py); then runbooks/DiskSpaceLow.md's command blocks, run as
written in order, must free the space, the alert must resolve at the person's receiver, and the ERP
must accept logins and changes again.

Timings of the test copy: scrape and evaluation every second, DiskSpaceLow's `for` 5 s, the
disk_headroom probe every second (shipped: every minute).
"""

from __future__ import annotations

import errno
import json
import os
import time

import requests

from controlplane import layout
from tests.controlplane.cli_helpers import PASSWORD, erpctl, ok, ok_json, small_filesystem

from .alerting import PAGE_BOUND, shipped_page_seconds, start_pipeline
from .conftest import Up
from tests.runbooks.harness import RunResult, run_runbook

MIB = 1 << 20
MIN_FREE = 16 * MIB
PROBE_SECONDS = 1
LOG_LINE = (json.dumps({"ts": "2026-01-01T00:00:00.000+00:00", "level": "debug", "logger": "erp_core.http",
                        "msg": "request", "path": "/api/v1/sales-orders", "status": 200}) + "\n").encode()


def _fill_with_log(log_path) -> int:
    """Append log lines to erpctl-up.log (as a runaway log would) until the filesystem is full; the
    bytes written."""
    chunk, written = LOG_LINE * (MIB // len(LOG_LINE)), 0
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        for piece in (chunk, LOG_LINE):
            while True:
                try:
                    written += os.write(fd, piece)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC, exc
                    break  # what did not fit is dropped; then smaller pieces
    finally:
        os.close(fd)
    return written


def _login_and_write(erp_url: str, code: str) -> tuple[int, int]:
    """(login status, create-a-partner status) as a business user would see them."""
    r = requests.post(erp_url + "/api/v1/auth/login", json={"username": "clerk", "password": PASSWORD}, timeout=10)
    if r.status_code != 200:
        return r.status_code, 0
    w = requests.post(erp_url + "/api/v1/partners", json={"code": code, "name": f"Customer {code}",
                                                          "is_customer": True},
                      headers={"Authorization": f"Bearer {r.json()['token']}"}, timeout=10)
    return r.status_code, w.status_code


def test_a_full_data_directory_pages_disk_space_low_and_its_runbook_frees_it(tmp_path, monkeypatch):
    from controlplane.monitoring.credentials import WEBHOOK_TOKEN_FILE

    with small_filesystem(tmp_path / "disk", "64m") as mnt:
        data = mnt / "data"
        for name, value in (("ERPCTL_BACKUP_PASSPHRASE", "a passphrase"), ("ERPCTL_PROBE_DISK_MIN_FREE_BYTES", str(MIN_FREE)),
                            ("ERPCTL_SCHEDULE_PROBE_DISK_HEADROOM", f"{PROBE_SECONDS}s")):
            monkeypatch.setenv(name, value)
        first = Up(data, tmp_path / "first-up.log")
        try:
            ok("erp", "user", "add", "clerk", "--role", "sales", "--password-stdin", "--data-dir", data,
               input=PASSWORD + "\n")
            ok_json("backup", "init", "--kdf-memory", "8192", "--data-dir", data)
            layout.path(data, "config").write_text("[backup.retention]\nkeep_last = 1\n")
            for _ in range(3):
                ok_json("backup", "create", "--data-dir", data)
            restarted = ok_json("restart", "--data-dir", data, timeout=180)  # erpctl up now appends to erpctl-up.log
            assert restarted["pid"] != first.process.proc.pid
        finally:
            first.process.stop()
        try:
            _scenario(tmp_path, data, first.erp_url, first.ops_port, data / WEBHOOK_TOKEN_FILE)
        finally:
            erpctl("stop", "--data-dir", data, timeout=60)


def _scenario(tmp_path, data, erp_url: str, ops_port: int, token_file) -> None:
    pipe = start_pipeline(tmp_path, {"erp": erp_url.removeprefix("http://"), "erpctl": f"127.0.0.1:{ops_port}"},
                          ops_port, token_file, shortened=("DiskSpaceLow",))
    try:
        pipe.wait("both targets up and the disk probe passing",
                  lambda: {(s["metric"]["job"], s["value"][1]) for s in pipe.query("up")} == {("erp", "1"), ("erpctl", "1")}
                  and pipe.query('erpctl_probe_success{probe="disk_headroom"} == 1'), 60)
        assert _login_and_write(erp_url, "C-BEFORE") == (200, 201)

        t_full = time.monotonic()
        written = _fill_with_log(layout.path(data, "up_log"))
        st = os.statvfs(data)
        assert st.f_bavail * st.f_frsize < 64 << 10, "the filesystem did not fill"
        _, wrote = _login_and_write(erp_url, "C-FULL")
        assert wrote not in (200, 201), "a change was accepted on a full disk"

        pipe.wait("DiskSpaceLow at the person's receiver", lambda: pipe.oncall.alerts("DiskSpaceLow"),
                  PAGE_BOUND + PROBE_SECONDS + 60)
        ((arrived, page), *_) = pipe.oncall.alerts("DiskSpaceLow")
        took = arrived - t_full
        free = pipe.query("erpctl_data_dir_filesystem_free_bytes")
        assert free and float(free[0]["value"][1]) < MIN_FREE, free  # the exporter measures the data directory's
        assert page["labels"]["severity"] == "page" and page["labels"]["instance"] == f"127.0.0.1:{ops_port}"
        assert page["annotations"]["runbook_url"].endswith("/DiskSpaceLow.md")
        print(f"\nDiskSpaceLow paged {took:.1f} s after the data directory's filesystem filled up "
              f"({written / MIB:.0f} MiB of log; bound {PAGE_BOUND + PROBE_SECONDS} s here; with the shipped "
              f"intervals at most {shipped_page_seconds('DiskSpaceLow') + 60:.0f} s: for 2m, scrape and "
              f"evaluation 15 s, group_wait 10 s, the probe every minute)")
        assert took <= PAGE_BOUND + PROBE_SECONDS, f"DiskSpaceLow paged after {took:.1f}s"
        assert not pipe.oncall.alerts("DiskSpaceLow", "resolved")

        t_runbook = time.monotonic()
        ran = run_runbook("DiskSpaceLow", {"ERPCTL_DATA_DIR": str(data), "ERPCTL_PROMETHEUS_URL": pipe.prom_url,
                                           "ERPCTL_ALERTMANAGER_URL": pipe.am_url})
        _check_the_runbook_run(ran)
        # The engine ran on the full disk: its record and evidence waited in memory until step 4 made room.
        warnings = [e["message"] for e in ran.events if e["event"] == "warning"]
        assert warnings and "cannot write the run's record" in warnings[0], ran.events
        assert warnings[-1] == "the run's record and evidence are written again", warnings
        kinds = [r["kind"] for r in ran.evidence(data)]
        assert kinds[0] == "runbook.start" and kinds[-1] == "runbook.end" and kinds.count("runbook.step") == 6, kinds
        pipe.wait("DiskSpaceLow resolved at the person's receiver",
                  lambda: pipe.oncall.alerts("DiskSpaceLow", "resolved", since=t_runbook), PAGE_BOUND + 60)
        print(f"runbook run and DiskSpaceLow resolved in {time.monotonic() - t_runbook:.1f} s")
        assert _login_and_write(erp_url, "C-AFTER") == (200, 201)
        assert layout.path(data, "database").exists()
    finally:
        pipe.stop()


def _check_the_runbook_run(ran: RunResult) -> None:
    said = ran.report()
    assert "disk nearly full" in ran.command("Confirm", "erpctl status").output, said
    assert "would forget 2" in ran.command("Confirm", "erpctl backup prune --dry-run").output, said
    recover = ran.ran("Recover")
    assert recover and all(r.exit_code == 0 for r in recover), said
    (prune,) = [c for c in recover if "erpctl backup prune" in c.command]
    assert "forgot 2" in prune.output, said
    check = ran.ran("Check recovery")
    assert check[0].exit_code == 0 and '"ready":true' in check[0].output, said
    assert ran.command("Check recovery", "erpctl erp maintenance status").exit_code == 0, said
    assert "disk nearly full" not in check[-1].output, said  # the alert still fires: it resolves minutes later
    assert ran.status in ("recovered", "not-recovered") and not ran.stopped_at, said
