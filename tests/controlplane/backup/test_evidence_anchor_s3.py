"""The evidence log anchored in an S3 bucket (moto's server over HTTP, boto3 as with AWS): every append
creates a new anchor object, none is overwritten, and `erpctl evidence verify --anchors` names the
bucket's anchor when the newest records were cut off and the head moved back with them."""

from __future__ import annotations

import json

from controlplane import evidence_anchor
from controlplane.evidence import EvidenceLog

from ..cli_helpers import erpctl

TAMPERED = 15


def test_the_head_is_anchored_in_s3_and_a_cut_tail_is_named(tmp_path, moto_s3, monkeypatch):
    store = f"s3://{moto_s3['bucket']}/anchors"
    monkeypatch.setenv("ERPCTL_EVIDENCE_ANCHOR", store)
    monkeypatch.setenv("ERPCTL_BACKUP_REPO", f"file://{tmp_path / 'no-repository'}")
    data = tmp_path / "data"
    log = EvidenceLog(data)
    for i in range(3):
        log.append("backup.verify", {"backup": f"b{i}"})
    anchors = evidence_anchor.store_anchors(store, data)
    assert [a.seq for a in anchors] == [1, 2, 3] and anchors[-1].sig == log.records()[-1]["sig"]
    head = log.head_anchor()
    assert evidence_anchor.write_anchor(store, data, {**head, "hash": head["hash"]}) is False  # never overwritten

    r = erpctl("--json", "evidence", "verify", "--anchors", "--data-dir", data)
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(r.stdout)["anchors"]["vouched_through"] == 3

    recs = log.records()[:1]  # the newest two cut off, the head moved back with them
    log.path.write_text(json.dumps(recs[0], sort_keys=True, separators=(",", ":")) + "\n")
    log.head_path.write_text(json.dumps({"seq": 1, "hash": recs[0]["hash"]}))
    assert erpctl("evidence", "verify", "--data-dir", data).returncode == 0  # the log alone cannot tell
    r = erpctl("--json", "evidence", "verify", "--anchors", "--data-dir", data)
    assert r.returncode == TAMPERED
    first = json.loads(r.stdout)["first_problem"]
    assert first["kind"] == "anchor" and first["seq"] == 2 and f"anchor store {store}/" in first["detail"]
