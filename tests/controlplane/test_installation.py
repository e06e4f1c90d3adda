"""The Installation: each setting from flag > environment > recorded by `erpctl up` > erpctl.toml >
default; invalid values named with exit 2; versioned state records; the layout document."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from controlplane import installation as I
from controlplane import layout
from controlplane.errors import DataDirProblem, SettingInvalid
from controlplane.monitoring import probes
from tests.controlplane.cli_helpers import erpctl, free_ports

ROOT = Path(__file__).resolve().parents[2]

# For every setting with more than one source: a (flag, env, toml) value, each different.
SAMPLES = {
    "database_url": ("sqlite:////tmp/flag.db", "sqlite:////tmp/env.db", "sqlite:////tmp/toml.db"),
    "host": ("10.0.0.1", "10.0.0.2", "10.0.0.3"),
    "erp_port": (8101, "8102", 8103),
    "ops_port": (8201, "8202", 8203),
    "erp_workers": (None, "3", 4),
    "erp_threads": (None, "5", 6),
    "erp_url": ("http://flag:1", "http://env:2", "http://toml:3"),
    "backup_repo": ("file:///flag", "file:///env", "file:///toml"),
    "backup_key_file": ("/flag.key", "/env.key", "/toml.key"),
    "s3_endpoint_url": (None, "http://env:9000", "http://toml:9000"),
    "s3_region": (None, "eu-west-1", "eu-west-3"),
    "s3_access_key_id": (None, "ENVKEY", "TOMLKEY"),
    "s3_secret_access_key": (None, "envsecret", "tomlsecret"),
    "s3_connect_timeout": (None, "7", 8),
    "s3_read_timeout": (None, "70", 80),
    "s3_max_attempts": (None, "4", 5),
    "probe_backup_max_age_seconds": (None, "100", 200),
    "probe_disk_min_free_bytes": (None, "1000", 2000),
    "probe_http_timeout_seconds": (None, "2", 3),
    "prometheus_url": ("http://flag:9090", "http://env:9090", "http://toml:9090"),
    "alertmanager_url": ("http://flag:9093", "http://env:9093", "http://toml:9093"),
    "runbooks_dir": ("/flag/runbooks", "/env/runbooks", "/toml/runbooks"),
    "field_key_escrow_file": (None, "/env/field-key.escrow", "/toml/field-key.escrow"),
    "field_key_escrow_public_key": (None, "/env/escrow.pub.pem", "/toml/escrow.pub.pem"),
    "drill_blackout": (None, "month-end,payroll=day:25", ["day:1"]),
    "drill_timeout_seconds": (None, "60", 120),
    "drill_prometheus": (None, "/opt/prometheus/bin/prometheus", "prometheus-2"),
    "evidence_key_file": (None, "/env/evidence.key", "/toml/evidence.key"),
    "evidence_anchor": (None, "file:///env-anchors", "s3://bucket/anchors"),
    "release_trusted_keys": ("/flag/keys", "/env/keys", "/toml/keys"),
    "ops_host": ("10.0.1.1", "10.0.1.2", "10.0.1.3"),
    "metrics_token": (None, "envtoken", "tomltoken"),
    "mfa_roles": (None, "finance", "admin,finance,auditor"),
    "trusted_proxies": (None, "10.0.0.5/32", "10.0.0.5/32,10.0.1.0/24"),
    "company_name": (None, "Env Trading Co.", "杭州示例贸易有限公司"),
    "company_tax_id": (None, "91330100MA2B000001", "91330100MA2B000002"),
    "company_address": (None, "Env street 1", "杭州市西湖区文三路 1 号"),
    "company_bank_account": (None, "Env Bank 0001", "中国工商银行 1202 0000"),
    "fleet_inventory": ("/flag/inventory.yml", "/env/inventory.yml", "/toml/inventory.yml"),
    "fleet_known_hosts": ("/flag/known_hosts", "/env/known_hosts", "/toml/known_hosts"),
    "fleet_identity_file": ("/flag/id", "/env/id", "/toml/id"),
    "fleet_connect_timeout": (1.5, "2.5", 3.5),
    "fleet_command_timeout": (10.0, "20", 30),
    "fleet_parallel": (2, "3", 4),
    "fleet_playbooks_dir": ("/flag/playbooks", "/env/playbooks", "/toml/playbooks"),
    "drill_postgresql_url": (None, "postgresql://env/postgres", "postgresql://toml/postgres"),
}
MULTI_SOURCE = [s.name for s in I.SETTINGS if (s.flag is not None) + len(s.env) + (s.toml is not None) > 1]


def _write_toml(data_dir: Path, name: str, value) -> None:
    section, key = I.BY_NAME[name].toml.rsplit(".", 1)
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "erpctl.toml").write_text(f"[{section}]\n{key} = {json.dumps(value)}\n")
    (data_dir / "erpctl.toml").chmod(0o600)  # it may hold a secret: others must not read it


def _open(data_dir, name, flag=None, env=None):
    s = I.BY_NAME[name]
    environ = {s.env[0]: env} if env is not None else {}
    flags = {name: flag} if flag is not None else {}
    return I.Installation.open(data_dir, environ=environ, **flags)


def test_every_multi_source_setting_has_a_sample():
    assert sorted(MULTI_SOURCE) == sorted(SAMPLES)


@pytest.mark.parametrize("name", MULTI_SOURCE)
def test_flag_then_environment_then_toml_then_default(tmp_path, name):
    s = I.BY_NAME[name]
    flag, env, toml = SAMPLES[name]
    d = tmp_path / "data"
    default = I.Installation.open(d, environ={}).resolve(name)
    assert default.source == "default"
    _write_toml(d, name, toml)
    from_toml = _open(d, name).resolve(name)
    assert from_toml.source.startswith("erpctl.toml [") and from_toml.value == s.parse(toml) != default.value
    from_env = _open(d, name, env=env).resolve(name)
    assert from_env.source == f"environment {s.env[0]}" and from_env.value == s.parse(env) != from_toml.value
    if flag is not None:
        from_flag = _open(d, name, flag=flag, env=env).resolve(name)
        assert from_flag.source == f"flag {s.flag}" and from_flag.value == s.parse(flag) != from_env.value


@pytest.mark.parametrize("name", [s.name for s in I.SETTINGS if s.legacy])
def test_backup_settings_fall_back_to_backup_json_after_the_toml(tmp_path, name):
    _flag, env, toml = SAMPLES[name]
    d = tmp_path / "data"
    d.mkdir()
    legacy = {}
    node = legacy
    *parents, last = I.BY_NAME[name].legacy.split(".")
    for p in parents:
        node = node.setdefault(p, {})
    node[last] = env
    (d / "backup.json").write_text(json.dumps(legacy))
    (d / "backup.json").chmod(0o600)
    got = _open(d, name).resolve(name)
    assert got.source.startswith("backup.json") and got.value == I.BY_NAME[name].parse(env)
    _write_toml(d, name, toml)
    assert _open(d, name).resolve(name).value == I.BY_NAME[name].parse(toml)


def _running(pid: int, name: str, value) -> I.RuntimeRecord:
    if name == "erp_url":
        return I.RuntimeRecord(pid=pid, running=True, erp_url=value)
    return I.RuntimeRecord(pid=pid, running=True, settings={name: value})


@pytest.mark.parametrize("name", [s.name for s in I.SETTINGS if s.recorded])
def test_what_a_running_erpctl_up_recorded_comes_before_the_toml(tmp_path, name):
    _flag, env, toml = SAMPLES[name]
    d = tmp_path / "data"
    _write_toml(d, name, toml)
    recorded = I.BY_NAME[name].parse(env)
    inst = I.Installation.open(d, environ={})
    inst.write_runtime(_running(os.getpid(), name, recorded))
    got = I.Installation.open(d, environ={}).resolve(name)
    assert got.value == recorded and "running 'erpctl up'" in got.source
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    inst.write_runtime(_running(int(dead.stdout), name, recorded))
    assert I.Installation.open(d, environ={}).resolve(name).source.startswith("erpctl.toml")


def test_the_erp_url_defaults_to_where_erpctl_up_served(tmp_path):
    d = tmp_path / "data"
    inst = I.Installation.open(d, environ={"ERPCTL_ERP_PORT": "8123"})
    assert inst.get("erp_url") == "http://127.0.0.1:8123"
    inst.write_runtime(I.RuntimeRecord(pid=1, running=False, erp_url="http://127.0.0.1:9555"))
    assert I.Installation.open(d, environ={}).get("erp_url") == "http://127.0.0.1:9555"


def test_probe_defaults_are_the_probes_own():
    assert I.BY_NAME["probe_backup_max_age_seconds"].default == probes.DEFAULT_BACKUP_MAX_AGE_SECONDS
    assert I.BY_NAME["probe_disk_min_free_bytes"].default == probes.DEFAULT_DISK_MIN_FREE_BYTES
    assert I.BY_NAME["probe_http_timeout_seconds"].default == probes.HTTP_TIMEOUT


@pytest.mark.parametrize("name,raw", [("erp_port", "99999"), ("probe_disk_min_free_bytes", "-1"),
                                      ("s3_connect_timeout", "soon"), ("backup_verify_level", 7)])
def test_an_invalid_value_names_itself_its_source_and_the_fix(tmp_path, name, raw):
    s = I.BY_NAME[name]
    d = tmp_path / "data"
    if s.env:
        inst = I.Installation.open(d, environ={s.env[0]: str(raw)})
    else:
        _write_toml(d, name, raw)
        inst = I.Installation.open(d, environ={})
    with pytest.raises(SettingInvalid) as exc:
        inst.get(name)
    assert exc.value.exit_code == 2 and name in exc.value.detail and str(raw) in exc.value.detail
    assert (s.env[0] if s.env else "erpctl.toml") in exc.value.detail and exc.value.fix


def test_erpctl_up_refuses_a_bad_port_in_erpctl_toml_before_serving(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    (d / "erpctl.toml").write_text('[erp]\nport = "eighty"\n')
    r = erpctl("--json", "up", "--data-dir", d, "--ops-port", free_ports(1)[0], timeout=60)
    assert r.returncode == 2, r.stderr
    err = json.loads(r.stderr.splitlines()[-1])["error"]
    assert "erp_port = 'eighty'" in err["detail"] and "erpctl.toml [erp] port" in err["detail"]
    assert "ERPCTL_ERP_PORT" in err["fix"]


def test_records_of_older_erpctl_load_and_newer_ones_are_refused(tmp_path):
    inst = I.Installation.open(tmp_path / "data", environ={})
    inst.path("runtime").parent.mkdir(parents=True)
    inst.path("runtime").write_text(json.dumps({"pid": 12, "erp_url": "http://x:1", "running": False,
                                                 "future_field": 1}))
    old = inst.runtime()
    assert old.version == I.RuntimeRecord.VERSION and old.erp_url == "http://x:1" and old.extra == {"future_field": 1}
    inst.write_runtime(old)
    assert json.loads(inst.path("runtime").read_text())["future_field"] == 1
    inst.path("runtime").write_text(json.dumps({"version": I.RuntimeRecord.VERSION + 1, "pid": 12}))
    with pytest.raises(DataDirProblem, match="newer erpctl"):
        inst.runtime()


def test_serving_record_keeps_the_release_version_apart(tmp_path):
    inst = I.Installation.open(tmp_path / "data", environ={})
    inst.path("serving").parent.mkdir(parents=True)
    inst.path("serving").write_text(json.dumps({"state": "serving", "version": "1.1.0", "pid": 5, "restarts": 0,
                                                 "erpctl_pid": 4}))
    rec = inst.serving()
    assert rec.version == "1.1.0" and rec.record_version == 1 and rec.state == "serving"


def test_an_upgrade_state_of_a_newer_erpctl_is_refused_with_exit_14(tmp_path):
    from controlplane.upgrade import state as S

    d = tmp_path / "data"
    old = {"id": "0123456789ab", "status": "running", "stage": "backfill", "completed": ["preflight", "backup"],
           "stages": {"backup": {"seconds": 1.5, "detail": {"backup": "abcd1234"}, "finished_epoch": 1.0}},
           "from_version": "1.0", "backup": {"id": "abcd" * 16, "created_at": "2026-01-01T00:00:00+00:00"},
           "maintenance": {"set": True, "prior": {"enabled": False, "reason": ""}}, "note": "kept"}
    S.state_path(d).parent.mkdir(parents=True)
    S.state_path(d).write_text(json.dumps(old))  # as erpctl 1.0 wrote it: no record version
    record = S.load(d)
    assert record.version == 1 and record.from_version == "1.0" and record.stage == "backfill" and not record.finished
    assert record.stages["backup"].seconds == 1.5 and record.backup.id == "abcd" * 16 and record.maintenance.set
    S.save(d, record)  # written back as it was read, with its version and the field this erpctl does not know
    assert json.loads(S.state_path(d).read_text()) == {**S.new().as_dict(), **old, "version": 1,
                                                     "started_at": None, "updated_at": record.updated_at,
                                                     "stages": {"backup": {**S.StageRun().as_dict(),
                                                                           **old["stages"]["backup"]}},
                                                     "backup": {**S.BackupTaken().as_dict(), **old["backup"]},
                                                     "maintenance": old["maintenance"]}
    S.state_path(d).write_text(json.dumps({**S.new().as_dict(), "version": 99}))
    r = erpctl("--json", "upgrade", "status", "--data-dir", d)
    assert r.returncode == 14, r.stderr
    assert "newer erpctl" in json.loads(r.stderr.splitlines()[-1])["error"]["detail"]


def test_results_written_before_they_had_a_version_load_and_are_rewritten_as_version_2(tmp_path):
    from controlplane import results

    v1 = {"backup.create": {"ok": False, "at": 1700000000.5, "at_iso": "2023-11-14T22:13:20.500000+00:00",
                            "error": "store unreachable"},
          "backup.create.last_success": {"ok": True, "at": 1699990000.0, "at_iso": "2023-11-14T19:26:40+00:00",
                                         "bytes_added": 4096}}
    (tmp_path / results.FILE).write_text(json.dumps(v1))  # as an erpctl before versioned results wrote it
    r = results.read(tmp_path)
    assert r["backup.create"].ok is False and r["backup.create"].value("error") == "store unreachable"
    assert r["backup.create.last_success"].at == 1699990000.0 and r["backup.create.last_success"].value("bytes_added") == 4096
    results.record(tmp_path, "probe.readyz", True, duration=0.01)
    on_disk = json.loads((tmp_path / results.FILE).read_text())
    assert on_disk["version"] == 2 and {k: on_disk["results"][k] for k in v1} == v1  # kept as they were
    assert results.read(tmp_path)["probe.readyz.last_success"].value("duration") == 0.01
    (tmp_path / results.FILE).write_text(json.dumps({"version": 3, "results": {}}))
    with pytest.raises(DataDirProblem, match="newer erpctl"):
        results.read(tmp_path)


def test_the_layout_document_is_generated_from_the_code():
    assert (ROOT / "docs" / "installation.md").read_text() == I.document(), \
        "docs/installation.md is stale: run python -m controlplane.installation > docs/installation.md"


def _file_names() -> set[str]:
    names = set()
    for e in layout.LAYOUT:
        if not e.owner.startswith("controlplane/"):
            continue  # the ERP's own database file: erp_core names it
        for part in e.path.rstrip("/").split("/"):
            if "." in part.strip(".") and "<" not in part:
                names.add(part)
    return names


def test_no_other_module_names_a_file_of_the_data_directory():
    names = _file_names()
    assert {"runtime.json", "erpctl.toml", "backup.json", "state.json", "field.key"} <= names
    found = []
    for path in sorted((ROOT / "controlplane").rglob("*.py")):
        if path.name == "layout.py":
            continue
        tree = ast.parse(path.read_text())
        docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                      if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))
                      and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings \
                    and node.value in names:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}")
    assert not found, "use controlplane.layout instead:\n" + "\n".join(found)


def test_upgrade_apply_watches_the_erp_where_erpctl_up_serves_it(tmp_path):
    from controlplane.cli.upgrade_common import options

    d = tmp_path / "data"
    I.Installation.open(d, environ={}).write_runtime(I.RuntimeRecord(pid=1, erp_url="http://127.0.0.1:9556"))
    common = {"data_dir": d, "database_url": None, "repo": None, "key_file": None, "lock_wait": 0}
    assert options(erp_url=None, offline=False, **common).erp_url == "http://127.0.0.1:9556"
    assert options(erp_url="http://127.0.0.1:7", offline=False, **common).erp_url == "http://127.0.0.1:7"
    assert options(erp_url=None, offline=True, **common).erp_url is None


def test_erpctl_settings_shows_each_value_and_its_source(tmp_path):
    d = tmp_path / "data"
    _write_toml(d, "backup_repo", "/srv/nightly")
    r = erpctl("--json", "settings", "--data-dir", d, ERPCTL_BACKUP_PASSPHRASE="hunter2", ERPCTL_ERP_PORT="8124")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)["settings"]
    assert rows["backup_repo"] == {"value": "file:///srv/nightly", "source": "erpctl.toml [backup] repo"}
    assert rows["backup_passphrase"]["value"] == "(set)" and "hunter2" not in r.stdout
    assert rows["erp_port"] == {"value": 8124, "source": "environment ERPCTL_ERP_PORT"}
    assert rows["database_url"]["value"].endswith("erp.sqlite3")
    bad = erpctl("settings", "--data-dir", d, ERPCTL_PROBE_DISK_MIN_FREE_BYTES="lots")
    assert bad.returncode == 2 and "probe_disk_min_free_bytes = 'lots'" in bad.stderr
    assert "INVALID" in bad.stdout


def test_erpctl_settings_shows_the_schedules_set_when_no_erpctl_up_runs(tmp_path):
    """No erpctl up runs: the schedules set in erpctl.toml and this environment (a running one's are
    its own, recorded in runtime.json: tests/monitors/test_job_failure_e2e.py)."""
    d = tmp_path / "data"
    d.mkdir()
    layout.path(d, "config").write_text('[schedule]\n"backup.verify" = "off"\n')
    r = erpctl("--json", "settings", "--data-dir", d, ERPCTL_SCHEDULE_PROBE_READYZ="5s")
    assert r.returncode == 0, r.stderr
    schedules = json.loads(r.stdout)["schedules"]
    assert schedules["of"].startswith("no erpctl up runs")
    assert {(j["id"], j["schedule"], j["source"]) for j in schedules["jobs"]} == {
        ("<ERPCTL_SCHEDULE_PROBE_READYZ>", "5s", "environment ERPCTL_SCHEDULE_PROBE_READYZ"),
        ("backup.verify", "off", "erpctl.toml [schedule] 'backup.verify'")}
    shown = erpctl("settings", "--data-dir", d, ERPCTL_SCHEDULE_BACKUP_VERIFY="1h").stdout
    assert "backup.verify                  1h  (environment ERPCTL_SCHEDULE_BACKUP_VERIFY)" in shown


def test_status_judges_the_disk_by_the_threshold_the_running_erpctl_up_uses(tmp_path):
    d = tmp_path / "data"
    _write_toml(d, "probe_disk_min_free_bytes", 1)
    I.Installation.open(d, environ={}).write_runtime(I.RuntimeRecord(
        pid=os.getpid(), running=True, erp_url="http://127.0.0.1:9",
        settings={"probe_disk_min_free_bytes": 1 << 60}))
    r = erpctl("--json", "status", "--data-dir", d, timeout=60)
    report = json.loads(r.stdout)
    assert report["host"]["disk_min_free_bytes"] == 1 << 60 and "disk nearly full" in {a["what"] for a in
                                                                                       report["attention"]}
    assert report["erp"]["url"] == "http://127.0.0.1:9/"  # where that erpctl up serves
    shell = json.loads(erpctl("--json", "status", "--data-dir", d, timeout=60,
                              ERPCTL_PROBE_DISK_MIN_FREE_BYTES="1").stdout)
    assert shell["host"]["disk_min_free_bytes"] == 1  # the environment still comes first
