"""erpctl restart's plan (what it starts, what it refuses before stopping anything), how a recorded pid is
told from a stranger that reuses it, and the shipped systemd unit."""

from __future__ import annotations

import configparser
import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from controlplane import procs
from controlplane.errors import RestartRefused
from controlplane.installation import Installation, RuntimeRecord
from controlplane.lifecycle import restart, running, stop
from controlplane.release.process import STOP_GRACE_SECONDS as ERP_STOP_GRACE
from controlplane.stack import STOP_GRACE_SECONDS as OPS_STOP_GRACE
from tests.controlplane.cli_helpers import erpctl, need
from tests.monitors.test_runbooks import check_command

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "contrib" / "systemd" / "erpctl@.service"
PG = "postgresql://erp:s3cret@db.internal:5432/erp"
PG_SHOWN = Installation.open("/nonexistent", environ={"ERPCTL_DATABASE_URL": PG}).display_url  # as erpctl up records it


def _served(inst: Installation, **kw) -> RuntimeRecord:
    fields = {"pid": 1, "data_dir": str(inst.data_dir), "host": "127.0.0.1", "erp_port": 18000, "ops_port": 18001,
              "database": inst.display_url, "database_backend": "sqlite", **kw}
    return RuntimeRecord(**fields)


def test_the_plan_repeats_host_and_ports_and_passes_the_database_url_outside_the_command_line(tmp_path):
    inst = Installation.open(tmp_path / "d", environ={"ERPCTL_DATABASE_URL": PG})
    p = restart.plan(inst, _served(inst, database=PG_SHOWN, database_backend="postgresql", host="0.0.0.0"),
                     ["erpctl"])
    assert p.argv == ("erpctl", "up", "--data-dir", str(inst.data_dir), "--host", "0.0.0.0", "--erp-port", "18000",
                      "--ops-port", "18001")
    apart = restart.plan(inst, _served(inst, database=PG_SHOWN, database_backend="postgresql", ops_host="127.0.0.2"),
                         ["erpctl"])
    assert apart.argv[-2:] == ("--ops-host", "127.0.0.2")  # the ops console stays where it listened
    assert p.database_url == inst.database_url and "s3cret" in p.database_url
    assert "s3cret" not in json.dumps(p.as_dict())
    sqlite = Installation.open(tmp_path / "d", environ={})
    assert restart.plan(sqlite, _served(sqlite), ["erpctl"]).database_url is None  # the data directory's own


@pytest.mark.parametrize("case, environ, record, words", [
    ("postgresql, no URL here", {}, {"database": PG_SHOWN, "database_backend": "postgresql"},
     ["served postgresql", "erp:***@db.internal", "empty SQLite", "ERPCTL_DATABASE_URL"]),
    ("another database", {"ERPCTL_DATABASE_URL": "postgresql://erp:s3cret@db.internal:5432/other"},
     {"database": PG_SHOWN, "database_backend": "postgresql"}, ["/other", "environment ERPCTL_DATABASE_URL"]),
    ("sqlite served, postgresql here", {"ERPCTL_DATABASE_URL": PG}, {}, ["erp.sqlite3", "db.internal"]),
    ("nothing recorded", {}, {"erp_port": None}, ["nothing records how 'erpctl up' serves"]),
    ("systemd runs it", {}, {"unit": "erpctl@main.service"}, ["systemctl restart erpctl@main.service"]),
    ("another data directory", {}, {"data_dir": "/srv/elsewhere"}, ["/srv/elsewhere"]),
])
def test_restart_refuses_what_it_cannot_repeat_and_says_how(tmp_path, case, environ, record, words):
    inst = Installation.open(tmp_path / "d", environ=environ)
    base = Installation.open(tmp_path / "d", environ={})
    with pytest.raises(RestartRefused) as exc:
        restart.plan(inst, _served(base, **record), ["erpctl"])
    said = exc.value.detail + " " + exc.value.fix
    assert exc.value.exit_code == 51 and all(w in said for w in words), (case, said)


def test_restart_refused_by_the_command_stops_nothing_and_exits_51(tmp_path):
    d = tmp_path / "d"
    inst = Installation.open(d, environ={})
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        inst.write_runtime(_served(inst, pid=sleeper.pid, pid_start=procs.start_ticks(sleeper.pid), running=True,
                                   database=PG_SHOWN, database_backend="postgresql"))
        r = erpctl("restart", "--data-dir", d, timeout=60)
        assert r.returncode == 51 and "empty SQLite" in r.stderr and "fix:" in r.stderr, r.stderr
        assert sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()


# ---- a recorded pid is the process that was recorded, or it is left alone ----------------------------

def test_a_pid_reused_by_another_process_is_never_signalled(tmp_path):
    d = tmp_path / "d"
    inst = Installation.open(d, environ={})
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        ticks = procs.start_ticks(sleeper.pid)
        for record, why in ((_served(inst, pid=sleeper.pid, pid_start=ticks - 1, running=True), "another process"),
                            (_served(inst, pid=sleeper.pid, pid_start=ticks, running=True), "runs something else"),
                            (_served(inst, pid=sleeper.pid, running=True), "runs something else")):
            inst.write_runtime(record)
            assert why in running.find(inst, inst.runtime())[1]
            r = erpctl("--json", "stop", "--data-dir", d, "--timeout", "1", timeout=60)
            assert r.returncode == 0, r.stderr
            out = json.loads(r.stdout)
            assert out["stopped"] is False and why in out["message"]
            assert sleeper.poll() is None, "a stranger was signalled"
        assert not inst.path("evidence").exists()  # nothing done, nothing recorded
    finally:
        sleeper.kill()
        sleeper.wait()


def test_the_command_line_of_erpctl_up_names_its_data_directory():
    cases = [(["/v/bin/python", "/v/bin/erpctl", "--log-level", "debug", "up", "--data-dir", "d"], "up"),
             (["python", "-m", "controlplane", "--json", "up", "--data-dir=d"], "up"),
             (["/v/bin/python", "/v/bin/erpctl", "stop", "--data-dir", "d"], "stop"),
             (["/usr/bin/python3", "-m", "http.server"], None)]
    for args, word in cases:
        rest = procs.erpctl_command(args)
        assert (procs.subcommand(rest)[0] if rest is not None else None) == word, args
    assert procs.option(["--data-dir", "a", "--data-dir=b"], "--data-dir") == "b"


def test_the_stop_grace_covers_a_hung_erp():
    """erpctl up needs the ERP's grace (SIGKILL after 10 s) and the ops console's before it exits."""
    assert stop.DEFAULT_TIMEOUT_SECONDS > ERP_STOP_GRACE + OPS_STOP_GRACE + 5


# ---- the systemd unit -----------------------------------------------------------------------------

def _unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str
    parser.read_string(UNIT.read_text())
    return parser


def test_the_systemd_unit_restarts_on_failure_and_outwaits_the_stop_grace():
    unit = _unit()
    service = unit["Service"]
    assert service["Restart"] == "on-failure" and service["KillMode"] == "mixed"
    assert int(service["TimeoutStopSec"]) > stop.DEFAULT_TIMEOUT_SECONDS
    assert service["EnvironmentFile"].lstrip("-") == "/etc/erpctl/%i.env"
    argv = shlex.split(service["ExecStart"].replace("%i", "main"))
    assert Path(argv[0]).name == "erpctl" and argv[1:] == ["up", "--data-dir", "/var/lib/erpctl/main"]
    assert check_command(argv[1:]) is None
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_systemd_accepts_the_unit(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        need("systemd-analyze is not installed")
    erpctl_here = Path(sys.executable).with_name("erpctl")
    copy = tmp_path / "erpctl@main.service"
    copy.write_text(UNIT.read_text().replace("/opt/erpctl/bin/erpctl", str(erpctl_here)))
    r = subprocess.run([analyze, "verify", "--man=no", str(copy)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and not r.stderr.strip() and not r.stdout.strip(), r.stdout + r.stderr
