"""A process killed (SIGKILL, for real) in the middle of an evidence append leaves a log that
`erpctl evidence verify` passes, and the next append completes it, records the repair and never
reuses a sequence number; what a killed append cannot explain is still named as tampering."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

from controlplane.evidence import REPAIR_KIND, EvidenceLog

from .cli_helpers import env, erpctl

TAMPERED = 15
APPEND = ("import sys\nfrom controlplane.evidence import EvidenceLog\n"
          "EvidenceLog(sys.argv[1]).append('backup.verify', {'backup': sys.argv[2]})\n")


def append_in_process(data_dir, backup: str, failpoint: str | None = None) -> int:
    """A separate process appends one record (killed at `failpoint`); its exit code."""
    extra = {"ERPCTL_FAILPOINTS": f"{failpoint}=kill"} if failpoint else {}
    return subprocess.run([sys.executable, "-c", APPEND, str(data_dir), backup], env=env(**extra),
                          capture_output=True, text=True, timeout=60).returncode


def verify(data_dir):
    r = erpctl("--json", "evidence", "verify", "--data-dir", data_dir)
    return r, json.loads(r.stdout)


@pytest.fixture
def log(tmp_path) -> EvidenceLog:
    log = EvidenceLog(tmp_path)
    for i in range(3):
        log.append("backup.create", {"backup": f"b{i}"})
    return log


@pytest.mark.parametrize("point, written", [("evidence.append.after_intent", False),
                                            ("evidence.append.after_log", True)])
def test_a_killed_append_verifies_and_the_next_one_repairs_it(tmp_path, log, point, written):
    assert append_in_process(tmp_path, "killed", point) == -signal.SIGKILL

    r, out = verify(tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert out["ok"] and out["records"] == (4 if written else 3)
    assert out["interrupted"] == {"seq": 4, "kind": "backup.verify", "written": written}
    human = erpctl("evidence", "verify", "--data-dir", tmp_path)
    assert human.returncode == 0 and "an append was interrupted: record 4 (backup.verify)" in human.stdout

    assert append_in_process(tmp_path, "next") == 0
    r, out = verify(tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert out["interrupted"] is None
    recs = log.records()
    assert [x["seq"] for x in recs] == list(range(1, len(recs) + 1)), "a sequence number was reused"
    backups = [x["data"]["backup"] for x in recs if x["kind"] == "backup.verify"]
    assert backups == (["killed", "next"] if written else ["next"])
    (repair,) = [x for x in recs if x["kind"] == REPAIR_KIND]
    assert repair["outcome"] == "repaired" and repair["seq"] == (5 if written else 4)
    assert repair["data"]["interrupted"] == {"seq": 4, "kind": "backup.verify", "written": written}
    assert ("complete in the log" if written else "never written") in repair["data"]["repair"]


def test_a_torn_line_of_a_killed_append_is_cut_and_recorded(tmp_path, log):
    assert append_in_process(tmp_path, "killed", "evidence.append.after_intent") == -signal.SIGKILL
    # What a power cut in the middle of the write leaves: the start of the pending line, no newline.
    pending = json.loads(log.head_path.read_text())["pending"]
    with open(log.path, "ab") as f:
        f.write(pending.encode()[:40])
    r, out = verify(tmp_path)
    assert r.returncode == 0 and out["records"] == 3, r.stdout
    assert append_in_process(tmp_path, "next") == 0
    assert verify(tmp_path)[0].returncode == 0
    assert [x["kind"] for x in log.records()][3:] == [REPAIR_KIND, "backup.verify"]


@pytest.mark.parametrize("how", ["pending record altered", "newest record removed", "foreign bytes"])
def test_tampering_after_a_killed_append_is_still_named(tmp_path, log, how):
    point = "evidence.append.after_log" if how == "pending record altered" else "evidence.append.after_intent"
    assert append_in_process(tmp_path, "killed", point) == -signal.SIGKILL
    lines = log.path.read_bytes().splitlines(keepends=True)
    if how == "pending record altered":
        lines[-1] = lines[-1].replace(b'"outcome":"ok"', b'"outcome":"failed"')
    elif how == "newest record removed":
        del lines[-1]
    else:
        lines.append(b'{"seq":4')
    log.path.write_bytes(b"".join(lines))

    r, out = verify(tmp_path)
    assert r.returncode == TAMPERED, r.stdout
    assert out["interrupted"] is None
    assert append_in_process(tmp_path, "next") == 0
    assert verify(tmp_path)[0].returncode == TAMPERED
    assert REPAIR_KIND not in [x.get("kind") for x in _readable(log)], "tampering recorded as a repair"


def _readable(log: EvidenceLog) -> list[dict]:
    out = []
    for line in log.path.read_bytes().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


def test_erpctl_backup_create_killed_in_its_evidence_append_and_the_next_one_repairs(tmp_path):
    """The same with the real commands: `erpctl backup create` killed at each failpoint, `erpctl
    evidence verify` after it, and the next `erpctl backup create` completing the append."""
    data, key = tmp_path / "data", {"ERPCTL_BACKUP_PASSPHRASE": "evidence crash test"}
    for args in (("erp", "migrate"), ("backup", "init")):
        r = erpctl(*args, "--data-dir", data, **key)
        assert r.returncode == 0, r.stderr
    log = EvidenceLog(data)
    for point, written in (("evidence.append.after_intent", False), ("evidence.append.after_log", True)):
        before = len(log.records())
        killed = erpctl("backup", "create", "--data-dir", data, ERPCTL_FAILPOINTS=f"{point}=kill", **key)
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        r, out = verify(data)
        assert r.returncode == 0 and out["interrupted"]["written"] is written, r.stdout
        assert out["records"] == before + written
        r = erpctl("backup", "create", "--data-dir", data, **key)
        assert r.returncode == 0, r.stderr
        r, out = verify(data)
        assert r.returncode == 0 and out["interrupted"] is None, r.stdout
        kinds = [x["kind"] for x in log.records()[before:]]
        assert kinds == ["backup.create"] * written + [REPAIR_KIND, "backup.create"], kinds
    assert [x["seq"] for x in log.records()] == list(range(1, len(log.records()) + 1))
