"""What an in-place restore discards (controlplane/backup/loss.py), on SQLite and PostgreSQL, with a
writer creating, invoicing orders through the ERP's HTTP API the whole time: the restore refuses
unless --discard-writes names the number of writes made since the backup (exit 31, nothing
changed); the list it keeps names exactly the acknowledged orders the backup lacks; afterwards no
order or invoice gets an id or number one acknowledged before had; the loss window is in the
evidence log, which verifies."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from sqlalchemy import create_engine, text

from controlplane.backup import loss
from controlplane.backup import restore as R
from controlplane.evidence import EvidenceLog
from tests.conftest import PASSWORD
from tests.controlplane.cli_helpers import erpctl

from .test_restore import Writer, any_target, first_ids, live, maintenance  # noqa: F401 - fixtures
from .test_verify import cli, cli_json, evidence_ok, new_repo


def _wait(cond, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def _switch(target, mode: str) -> None:
    r = erpctl("erp", "maintenance", mode, "--data-dir", target.data_dir, "--database-url", target.database_url)
    assert r.returncode == 0, r.stdout + r.stderr


def _rows(target, sql: str) -> list:
    engine = create_engine(target.database_url)
    try:
        with engine.connect() as c:
            return c.execute(text(sql)).all()
    finally:
        engine.dispose()


def _backup_under_writer(target, repo_url, live):  # noqa: F811 - the fixture, passed on
    erp = live(target)
    repo = new_repo(repo_url, target.data_dir)
    writer = Writer(erp, first_ids(target))
    writer.start()
    _wait(lambda: writer.done >= 3, f"the writer acknowledged no orders: {writer.errors[:3]}")
    m = repo.create_backup(target)
    after = len(writer.orders)
    _wait(lambda: len(writer.orders) >= after + 3, f"no orders after the backup: {writer.errors[:3]}")
    return erp, writer, m


def _check_the_list(target, writer, listed_orders: dict, acked: list) -> None:
    """The list names exactly the acknowledged orders the restored database lacks, with their numbers."""
    kept = {i for (i,) in _rows(target, "SELECT id FROM sales_orders")}
    lost = {oid: number for oid, number in acked if oid not in kept}
    assert lost, "the writer's orders after the backup are gone"
    assert listed_orders == lost


def _listed(entries: list, entity: str) -> dict:
    return {int(e["entity_id"]): e["number"] for e in entries if e["entity"] == entity and e["action"] == "create"}


def _no_reuse(target, writer, acked_orders: list, acked_invoices: list) -> None:
    """Orders made after the restore get ids and numbers above every acknowledged one (none reused)."""
    before = len(writer.orders)
    _wait(lambda: len(writer.orders) >= before + 2 and len(writer.invoices) > len(acked_invoices),
          f"no orders after the restore: {writer.errors[-3:]}")
    writer.stop.set()
    writer.join(60)
    new_orders, new_invoices = writer.orders[before:], writer.invoices[len(acked_invoices):]
    assert min(i for i, _ in new_orders) > max(i for i, _ in acked_orders)
    assert min(n for _, n in new_orders) > max(n for _, n in acked_orders)
    assert min(i for i, _ in new_invoices) > max(i for i, _ in acked_invoices)
    assert min(n for _, n in new_invoices) > max(n for _, n in acked_invoices)
    numbers = [n for (n,) in _rows(target, "SELECT number FROM sales_orders")]
    assert len(numbers) == len(set(numbers))


def test_restore_under_a_writer_names_the_count_lists_what_it_discards_and_reuses_nothing(
        any_target, file_repo_url, live):  # noqa: F811
    erp, writer, m = _backup_under_writer(any_target, file_repo_url, live)
    records = len(EvidenceLog(any_target.data_dir).records())

    # --yes alone is refused while the writes since the backup are not confirmed: nothing changes
    r = cli(any_target, file_repo_url, "backup", "restore", m.id, "--yes")
    assert r.returncode == 31, r.stdout + r.stderr
    err = json.loads(r.stderr.strip().splitlines()[-1])["error"]
    assert "write(s) made since" in err["detail"] and "nothing was changed" in err["detail"]
    assert "--dry-run" in err["fix"] and err["found"] > 0
    assert R.read_state(any_target) is None and maintenance(any_target)["enabled"] is False
    assert len(EvidenceLog(any_target.data_dir).records()) == records
    going = len(writer.orders)
    _wait(lambda: len(writer.orders) > going, "the writer stopped after the refusal")

    # the operator stops the writes, lists them, and names their number
    _switch(any_target, "on")
    dry = cli(any_target, file_repo_url, "backup", "restore", m.id, "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    listing = cli_json(dry)
    n = listing["count"]
    wrong = cli(any_target, file_repo_url, "backup", "restore", m.id, "--yes", "--discard-writes", str(n + 1))
    assert wrong.returncode == 31 and f"discards {n} write(s)" in wrong.stderr
    assert R.read_state(any_target) is None
    # someone logs in meanwhile (allowed in maintenance mode): no business write, the count holds
    assert erp.http.post(erp.url + "/api/v1/auth/login", json={"username": "admin", "password": PASSWORD},
                         timeout=30).status_code == 200

    r = cli(any_target, file_repo_url, "backup", "restore", m.id, "--yes", "--discard-writes", str(n))
    assert r.returncode == 0, r.stdout + r.stderr
    window = cli_json(r)["loss"]
    acked_orders, acked_invoices = list(writer.orders), list(writer.invoices)
    assert window["discarded"] == n and sum(window["by_kind"].values()) == n
    kept_file = Path(window["list_file"])
    assert kept_file.parent == any_target.data_dir / "restores" and kept_file.name.endswith("-discarded.json")
    body = kept_file.read_bytes()
    assert hashlib.sha256(body).hexdigest() == window["list_sha256"]
    kept = json.loads(body)
    assert kept["count"] == n == len(kept["writes"]) and kept["backup"] == m.id
    assert _listed(kept["writes"], "sales_orders") == _listed(listing["entries"], "sales_orders")
    _check_the_list(any_target, writer, _listed(kept["writes"], "sales_orders"), acked_orders)
    lost_invoices = {i: num for i, num in acked_invoices
                     if i not in {x for (x,) in _rows(any_target, "SELECT id FROM invoices")}}
    assert _listed(kept["writes"], "invoices") == lost_invoices
    assert window["numbering_floors"]["series"]["SO"] >= int(max(num for _, num in acked_orders)[2:])

    # the operator's maintenance stays on until the operator ends it; then no id or number is reused
    assert maintenance(any_target)["enabled"] is True
    _switch(any_target, "off")
    _no_reuse(any_target, writer, acked_orders, acked_invoices)

    rec = [x for x in EvidenceLog(any_target.data_dir).records() if x["kind"] == "backup.restore"][-1]
    assert rec["outcome"] == "ok" and rec["data"]["loss_window"]["list_sha256"] == window["list_sha256"]
    w = rec["data"]["loss_window"]
    assert w["discarded"] == n and w["backup_time"] == m.created_at and w["first_at"] <= w["last_at"]
    assert w["numbering_raised"]["series"]["SO"][1] == w["numbering_floors"]["series"]["SO"]
    evidence_ok(any_target)


def test_the_restore_stops_the_writes_before_it_lists_them(any_target, file_repo_url, live):  # noqa: F811
    """No maintenance beforehand: the writer is still writing when the restore switches the ERP
    read-only; the list it takes then is exact (writes in flight at the switch included)."""
    erp, writer, m = _backup_under_writer(any_target, file_repo_url, live)
    result = R.restore(any_target, new_repo(file_repo_url, any_target.data_dir), m.id, discard_writes=loss.ANY)
    acked_orders, acked_invoices = list(writer.orders), list(writer.invoices)
    kept = json.loads(Path(result["loss"]["list_file"]).read_text())
    # orders acknowledged after the restore have ids above the floors: split them off
    floor = result["loss"]["numbering_floors"]["series"]["SO"]
    before_restore = [(i, num) for i, num in acked_orders if int(num[2:]) <= floor]
    _check_the_list(any_target, writer, _listed(kept["writes"], "sales_orders"), before_restore)
    assert maintenance(any_target)["enabled"] is False
    _no_reuse(any_target, writer, before_restore, [x for x in acked_invoices if int(x[1][3:]) <=
                                                   result["loss"]["numbering_floors"]["series"]["INV"]])
    evidence_ok(any_target)
