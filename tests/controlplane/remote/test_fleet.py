"""erpctl fleet against real sshd: two hosts (each its own sshd, host key and erp_root), strict host
keys, key-based login, per-host results, distinct exit codes, the bound on parallelism, the evidence."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import time
from datetime import datetime
from pathlib import Path

import pytest

from ..cli_helpers import erpctl, free_ports, need, ok, ok_json
from .sshd import Sshd, keygen, write_inventory


def _run(fleet, *args, **kw):
    return erpctl("--json", "fleet", *args, "--data-dir", fleet["data"], **kw)


def test_the_inventory_is_ansibles_own_format(fleet):
    if shutil.which("ansible-inventory") is None:
        need("ansible-inventory is not installed (Debian: ansible-core)")
    r = subprocess.run(["ansible-inventory", "-i", str(fleet["inventory"]), "--list"], capture_output=True,
                       text=True, timeout=60, check=True)
    listed = json.loads(r.stdout)
    assert sorted(listed["app"]["hosts"]) == ["app1", "app2"] and listed["database"]["hosts"] == ["db1"]
    assert listed["_meta"]["hostvars"]["app2"]["ansible_port"] == fleet["servers"][1].port
    status = ok_json("fleet", "status", "--data-dir", fleet["data"])
    assert {h["host"]: h["roles"] for h in status["hosts"]} == {"app1": ["app"], "app2": ["app"], "db1": ["database"]}
    assert all(h["outcome"] == "ok" and int(h["facts"]["disk_free_bytes"]) > 0 for h in status["hosts"])


def test_ssh_check_and_exec_give_each_hosts_own_result(fleet):
    check = ok_json("fleet", "ssh-check", "--data-dir", fleet["data"])
    assert [h["outcome"] for h in check["hosts"]] == ["ok"] * 3
    assert {h["fingerprint"] for h in check["hosts"]} == {s.fingerprint for s in fleet["servers"]}
    out = ok_json("fleet", "exec", 'echo "$PWD $HOME"; echo secret-output > marker', "--data-dir", fleet["data"])
    roots = {h["host"]: h["stdout"].split() for h in out["hosts"]}
    for name, (pwd, home) in roots.items():
        assert pwd == home == str(fleet["tmp"] / "roots" / name)
        assert (fleet["tmp"] / "roots" / name / "marker").read_text() == "secret-output\n"
    assert {h["exit_code"] for h in out["hosts"]} == {0}
    record = json.loads((fleet["data"] / "evidence.jsonl").read_text().splitlines()[-1])
    assert record["kind"] == "fleet_exec" and record["data"]["command"].startswith("echo")
    assert [(h["host"], h["exit_code"]) for h in record["data"]["hosts"]] == [("app1", 0), ("app2", 0), ("db1", 0)]
    assert all(len(h["stdout_sha256"]) == 64 for h in record["data"]["hosts"])
    assert "/roots/" not in json.dumps(record)  # digests, never the output
    ok("evidence", "verify", "--data-dir", fleet["data"])


def test_a_command_failing_on_one_host_fails_the_run_with_its_code(fleet):
    r = _run(fleet, "exec", 'test "${PWD##*/}" != app2')
    assert r.returncode == 103, r.stderr
    hosts = {h["host"]: (h["outcome"], h["exit_code"]) for h in json.loads(r.stdout)["hosts"]}
    assert hosts == {"app1": ("ok", 0), "app2": ("failed", 1), "db1": ("ok", 0)}
    assert "app2 (failed)" in json.loads(r.stderr)["error"]["detail"]


def test_a_command_past_its_timeout_is_stopped(fleet):
    t0 = time.monotonic()
    r = _run(fleet, "exec", "sleep 30", "--limit", "db1", "--command-timeout", "1")
    assert r.returncode == 103 and time.monotonic() - t0 < 15
    assert json.loads(r.stdout)["hosts"][0]["outcome"] == "timeout"


def test_an_unknown_host_key_is_refused_with_its_fingerprint(fleet):
    empty = fleet["tmp"] / "empty_known_hosts"
    empty.write_text("")
    r = _run(fleet, "exec", "touch should-not-exist", "--limit", "app1", "--known-hosts", empty)
    assert r.returncode == 102
    detail = json.loads(r.stderr)["error"]["detail"]
    assert "app1" in detail and fleet["servers"][0].fingerprint in detail and "unknown" in detail
    assert not (fleet["tmp"] / "roots" / "app1" / "should-not-exist").exists()
    assert empty.read_text() == ""  # never accepted silently
    wrong = _run(fleet, "trust", "app1", "--fingerprint", fleet["servers"][1].fingerprint, "--known-hosts", empty)
    assert wrong.returncode == 102 and empty.read_text() == ""


def test_a_changed_host_key_is_refused_until_the_operator_trusts_the_new_one(fleet, tmp_path):
    server = Sshd(tmp_path / "sshd", free_ports(1)[0], Path(f"{fleet['client']}.pub")).start()
    try:
        inv = write_inventory(tmp_path / "inventory.yml", {"app3": ("app", server)}, fleet["client"],
                              tmp_path / "roots")
        args = ("--inventory", inv, "--known-hosts", tmp_path / "known_hosts")
        ok("fleet", "trust", "app3", "--fingerprint", server.fingerprint, "--data-dir", fleet["data"], *args)
        ok("fleet", "exec", "true", "--data-dir", fleet["data"], *args)
        old = server.fingerprint
        server.rekey()
        r = _run(fleet, "exec", "touch reached", *args)
        assert r.returncode == 102, r.stderr
        err = json.loads(r.stderr)["error"]
        assert "app3" in err["detail"] and server.fingerprint in err["detail"] and old in err["detail"]
        assert "CHANGED" in err["detail"] and f"--fingerprint {server.fingerprint}" in err["fix"]
        assert json.loads(r.stdout)["hosts"][0]["outcome"] == "host-key-changed"
        assert not (tmp_path / "roots" / "app3" / "reached").exists()
        trusted = ok_json("fleet", "trust", "app3", "--fingerprint", server.fingerprint, "--data-dir",
                          fleet["data"], *args)
        assert trusted["replaced"] == old
        ok("fleet", "exec", "true", "--data-dir", fleet["data"], *args)
    finally:
        server.stop()


def test_an_unreachable_host_gives_its_code_within_the_timeout(fleet, tmp_path):
    dead = Sshd(tmp_path / "dead", free_ports(1)[0], Path(f"{fleet['client']}.pub"))  # never started
    inv = write_inventory(tmp_path / "inventory.yml", {"app1": ("app", fleet["servers"][0]), "gone": ("app", dead)},
                          fleet["client"], tmp_path / "roots")
    t0 = time.monotonic()
    r = _run(fleet, "exec", "true", "--inventory", inv, "--connect-timeout", "3")
    assert time.monotonic() - t0 < 15
    assert r.returncode == 101, r.stderr
    assert {h["host"]: h["outcome"] for h in json.loads(r.stdout)["hosts"]} == {"app1": "ok", "gone": "unreachable"}
    stranger = write_inventory(tmp_path / "stranger.yml", {"app1": ("app", fleet["servers"][0])},
                               keygen(tmp_path / "not_authorized", "stranger"), tmp_path / "roots")
    r = _run(fleet, "exec", "true", "--inventory", stranger)
    assert r.returncode == 101 and json.loads(r.stdout)["hosts"][0]["outcome"] == "auth-failed"
    assert "refused the login" in json.loads(r.stderr)["error"]["detail"]


def _intervals(out: dict) -> list[tuple[datetime, datetime]]:
    return sorted((datetime.fromisoformat(h["started"]), datetime.fromisoformat(h["finished"])) for h in out["hosts"])


def test_parallelism_is_bounded(fleet):
    serial = _intervals(ok_json("fleet", "exec", "sleep 0.3", "--parallel", "1", "--data-dir", fleet["data"]))
    assert all(a[1] <= b[0] for a, b in zip(serial, serial[1:])), serial
    together = _intervals(ok_json("fleet", "exec", "sleep 0.3", "--parallel", "3", "--data-dir", fleet["data"]))
    assert max(s for s, _ in together) < min(e for _, e in together), together


def test_a_large_output_is_digested_whole_and_shown_in_part(fleet):
    out = ok_json("fleet", "exec", "head -c 300000 /dev/zero; echo oops >&2", "--limit", "app1",
                  "--data-dir", fleet["data"])["hosts"][0]
    assert out["stdout_bytes"] == 300000 and out["stdout_sha256"] == hashlib.sha256(bytes(300000)).hexdigest()
    assert len(out["stdout"]) == 64 * 1024 and out["stderr"] == "oops\n"


def test_logs_shows_the_tail_of_each_hosts_erpctl_up_log(fleet):
    (fleet["tmp"] / "roots" / "app2" / "erpctl-up.log").write_text("".join(f"line {i}\n" for i in range(100)))
    out = ok_json("fleet", "logs", "-n", "2", "--limit", "app2", "--data-dir", fleet["data"])["hosts"][0]
    assert out["host"] == "app2" and out["stdout"] == "line 98\nline 99\n"
