"""`erpctl evidence verify` (the real console script): exit 0 when the chain is intact, 15 when a
record was altered, removed or reordered or the newest ones were cut off, naming the first bad
record in the human output and in --json."""

from __future__ import annotations

import json

import pytest

from controlplane.evidence import EvidenceLog, record_hash

from .cli_helpers import erpctl

TAMPERED = 15


def _log(data_dir, n=6) -> EvidenceLog:
    log = EvidenceLog(data_dir)
    for i in range(n):
        log.append("backup.verify", {"backup": f"b{i}", "levels": [{"level": 1, "ok": True}]})
    return log


def _rewrite(log: EvidenceLog, records: list[dict]) -> None:
    log.path.write_text("".join(json.dumps(r, sort_keys=True, separators=(",", ":")) + "\n" for r in records))


def verify(data_dir, *extra):
    r = erpctl("--json", "evidence", "verify", "--data-dir", data_dir, *extra)
    return r, json.loads(r.stdout)


def test_intact_chain_exits_0(tmp_path):
    _log(tmp_path)
    r, out = verify(tmp_path)
    assert r.returncode == 0, r.stderr
    assert out["ok"] and out["records"] == 6 and out["first_problem"] is None
    human = erpctl("evidence", "verify", "--data-dir", tmp_path)
    assert human.returncode == 0 and "6 record(s)" in human.stdout and "intact" in human.stdout


def test_no_log_yet_is_intact(tmp_path):
    r, out = verify(tmp_path)
    assert r.returncode == 0 and out["ok"] and out["records"] == 0


def test_log_option_points_at_another_directory(tmp_path):
    _log(tmp_path / "copy", 2)
    r = erpctl("--json", "evidence", "verify", "--log", tmp_path / "copy", "--data-dir", tmp_path / "empty")
    assert r.returncode == 0 and json.loads(r.stdout)["records"] == 2


@pytest.mark.parametrize("how, kind, seq", [
    ("altered", "altered", 3),
    ("altered_rehashed", "altered", 3),
    ("removed", "removed", 4),
    ("reordered", "reordered", 3),
    ("truncated", "truncated", 6),
])
def test_tampering_is_named_with_a_distinct_exit_code(tmp_path, how, kind, seq):
    log = _log(tmp_path)
    recs = log.records()
    if how == "altered":
        recs[2]["outcome"] = "failed"
    elif how == "altered_rehashed":  # altered and its own hash recomputed: the next link breaks
        recs[2]["data"]["levels"][0]["ok"] = False
        recs[2]["hash"] = record_hash(recs[2])
    elif how == "removed":
        del recs[2]
    elif how == "reordered":
        recs[2], recs[3] = recs[3], recs[2]
    elif how == "truncated":
        recs = recs[:4]
    _rewrite(log, recs)

    r, out = verify(tmp_path)
    assert r.returncode == TAMPERED, r.stdout + r.stderr
    assert not out["ok"]
    first = out["first_problem"]
    assert first["kind"] == kind and first["seq"] == seq, first
    assert out["intact_through"] == (4 if how == "truncated" else 2)
    err = json.loads(r.stderr.strip().splitlines()[-1])
    assert err["exit_code"] == TAMPERED and err["error"]["first_problem"]["seq"] == seq

    human = erpctl("evidence", "verify", "--data-dir", tmp_path)
    assert human.returncode == TAMPERED
    assert f"first bad record: {seq} ({kind})" in human.stdout
    assert "not intact" in human.stderr


def test_unreadable_line_is_named(tmp_path):
    log = _log(tmp_path, 3)
    with open(log.path, "a") as f:
        f.write("{not json\n")
    r, out = verify(tmp_path)
    assert r.returncode == TAMPERED and out["first_problem"]["kind"] == "unreadable"
    assert out["first_problem"]["line"] == 4


def test_appending_after_verification_keeps_the_chain(tmp_path):
    _log(tmp_path, 2)
    assert verify(tmp_path)[0].returncode == 0
    EvidenceLog(tmp_path).append("backup.restore", {"backup": "b1", "result": "swapped"})
    r, out = verify(tmp_path)
    assert r.returncode == 0 and out["records"] == 3
