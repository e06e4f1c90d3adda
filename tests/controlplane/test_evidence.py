"""The evidence log tells the truth about every alteration, removal or reordering."""

import json

from controlplane.evidence import EvidenceLog


def _log(tmp_path, n=5):
    log = EvidenceLog(tmp_path)
    for i in range(n):
        log.append("backup.create", {"backup": f"b{i}", "bytes": i * 100})
    return log


def _rewrite(log, lines):
    log.path.write_text("".join(json.dumps(l, sort_keys=True, separators=(",", ":")) + "\n" for l in lines))


def test_intact_chain_verifies(tmp_path):
    log = _log(tmp_path)
    assert log.verify() == (5, [])
    assert [r["seq"] for r in log.records()] == [1, 2, 3, 4, 5]


def test_altered_record_is_named(tmp_path):
    log = _log(tmp_path)
    recs = log.records()
    recs[2]["data"]["bytes"] = 999
    _rewrite(log, recs)
    _, problems = log.verify()
    assert problems[0].kind == "altered" and problems[0].seq == 3


def test_altered_record_with_recomputed_hash_breaks_the_next_link(tmp_path):
    from controlplane.evidence import record_hash
    log = _log(tmp_path)
    recs = log.records()
    recs[1]["outcome"] = "failed"
    recs[1]["hash"] = record_hash(recs[1])
    _rewrite(log, recs)
    _, problems = log.verify()
    assert problems[0].seq == 2 and problems[0].kind == "altered"


def test_removed_record_is_named(tmp_path):
    log = _log(tmp_path)
    recs = log.records()
    del recs[1]
    _rewrite(log, recs)
    _, problems = log.verify()
    assert problems[0].kind == "removed" and problems[0].seq == 3 and "2..2 missing" in problems[0].detail


def test_reordered_records_are_named(tmp_path):
    log = _log(tmp_path)
    recs = log.records()
    recs[1], recs[2] = recs[2], recs[1]
    _rewrite(log, recs)
    _, problems = log.verify()
    assert problems[0].kind == "reordered" and problems[0].seq == 2 and problems[0].line == 2


def test_removing_the_newest_records_is_detected(tmp_path):
    log = _log(tmp_path)
    _rewrite(log, log.records()[:3])
    _, problems = log.verify()
    assert problems[0].kind == "truncated" and "5" in problems[0].detail


def test_appends_continue_the_chain_across_instances(tmp_path):
    _log(tmp_path, 2)
    EvidenceLog(tmp_path).append("restore", {"ok": True}, outcome="ok")
    assert EvidenceLog(tmp_path).verify() == (3, [])
