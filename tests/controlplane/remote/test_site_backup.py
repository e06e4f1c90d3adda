"""backup.yml and restore.yml on the deployed site (two app hosts behind HAProxy, one PostgreSQL database):
a sales order made through HAProxy, `erpctl fleet backup` records a verified backup, a second order after
it; `erpctl fleet restore` without --yes is refused and changes nothing, as is one of a backup that does not
exist; one whose restore fails after the drain leaves every host drained (none serves) and the database as it
was; with --yes it brings back the first order and not the second, and both hosts serve the release they had
again behind HAProxy (UP)."""

from __future__ import annotations

import json
import time

import pytest
import yaml
from sqlalchemy import create_engine, text

from ..cli_helpers import erpctl
from ..release_helpers import FIXTURE_ADMIN
from .site import Client, get, haproxy_states, run_fleet, through_haproxy, versions

pytestmark = pytest.mark.postgres


def evidence(r: dict) -> list[dict]:
    return [json.loads(line) for line in (r["ctl"] / "evidence.jsonl").read_text().splitlines()]


class Orders:
    """A business user making and reading sales orders through HAProxy (logged in afresh for each read)."""

    def __init__(self, base: str):
        self.base, self.client = base, Client(base)

    def create(self) -> int:
        c = self.client
        status, data, _ = get(c.api + "/sales-orders", c.token, {"partner_id": c.customer, "warehouse_id": c.warehouse,
                                                                 "lines": [{"product_id": c.product, "quantity": "1"}]})
        assert status == 201, data
        return data["id"]

    def status(self, order_id: int) -> int:
        status, data, _ = get(self.client.api + "/auth/login", body={"username": FIXTURE_ADMIN[0],
                                                                      "password": FIXTURE_ADMIN[1]})
        assert status == 200, data
        return get(f"{self.client.api}/sales-orders/{order_id}", data["token"])[0]


def order_ids(url: str, ids: list[int]) -> set[int]:
    engine = create_engine(url)
    try:
        with engine.connect() as c:
            return set(c.execute(text("SELECT id FROM sales_orders WHERE id = ANY(:ids)"), {"ids": ids}).scalars())
    finally:
        engine.dispose()


def failing_restore(r: dict, backup: str):
    """`erpctl fleet restore --yes` whose restore on the first host fails just before its swap (a failpoint in the
    environment the inventory gives erpctl there)."""
    inv = yaml.safe_load(r["inventory"].read_text())
    inv["all"]["vars"]["erp_backup_environment"] = {"ERPCTL_FAILPOINTS": "restore.before_swap=fail"}
    path = r["tmp"] / "inventory-failing-restore.yml"
    path.write_text(yaml.safe_dump(inv, sort_keys=False))
    return erpctl("--json", "fleet", "restore", backup, "--yes", "--data-dir", r["ctl"], "--inventory", path,
                  timeout=900)


def test_fleet_backup_then_restore_brings_back_the_backed_up_write_behind_haproxy(deployed):
    r = deployed
    release = versions(r)
    assert len(set(release.values())) == 1, release
    orders = Orders(r["lb"])
    first = orders.create()

    t0 = time.monotonic()
    made = run_fleet(r, "backup")
    backup_seconds = time.monotonic() - t0
    out = json.loads(made.stdout)
    assert made.returncode == 0, out.get("output", made.stdout)[-6000:] + made.stderr
    backup = out["backup"]
    assert backup and out["reported"]["verified"] is True and out["reported"]["verified_level"] == 1
    assert out["reported"]["host"] == "app1" and out["reported"]["size_bytes"] > 0
    assert out["changed"] >= 1 and out["hosts"]["app2"]["changed"] == 0
    record = evidence(r)[-1]
    assert record["kind"] == "fleet_backup" and record["outcome"] == "ok"
    assert record["data"]["reported"]["backup"] == backup and record["data"]["reported"]["verified"] is True

    second = orders.create()
    records = len(evidence(r))
    refused = run_fleet(r, "restore", backup[:12])
    assert refused.returncode == 56, refused.stdout + refused.stderr
    assert "--yes" in json.loads(refused.stderr)["error"]["fix"]
    assert len(evidence(r)) == records  # nothing ran
    unknown = run_fleet(r, "restore", "0000ffff", "--yes")  # no such backup: refused before any host is drained
    assert unknown.returncode == 57, unknown.stdout + unknown.stderr
    assert "nothing was changed" in json.loads(unknown.stderr)["error"]["detail"]
    assert not json.loads(unknown.stdout)["left_drained"] and evidence(r)[-1]["kind"] == "fleet_restore"
    assert orders.status(second) == 200 and haproxy_states(r) == {"app1": "UP", "app2": "UP"}

    failed = failing_restore(r, backup[:12])  # fails after the drain: every host is left drained
    assert failed.returncode == 57, failed.stdout[-6000:] + failed.stderr
    assert json.loads(failed.stdout)["left_drained"] and "left drained" in json.loads(failed.stderr)["error"]["detail"]
    assert "UP" not in haproxy_states(r).values() and get(r["lb"] + "/healthz")[0] == 503
    assert order_ids(r["url"], [first, second]) == {first, second}  # the live database untouched
    assert evidence(r)[-1]["kind"] == "fleet_restore" and evidence(r)[-1]["outcome"] == "failed"

    t0 = time.monotonic()
    done = run_fleet(r, "restore", backup[:12], "--yes")
    restore_seconds = time.monotonic() - t0
    out = json.loads(done.stdout)
    assert done.returncode == 0, out.get("output", done.stdout)[-8000:] + done.stderr
    print(f"\nfleet backup (verified L1) {backup_seconds:.1f} s; fleet restore of 2 hosts behind HAProxy "
          f"{restore_seconds:.1f} s (restore itself {out['reported']['duration_seconds']} s)")
    assert out["backup"] == backup and out["reported"]["restored"] and out["reported"]["verified_through"] == 3
    assert out["reported"]["discarded_writes"] >= 1 and not out["left_drained"]
    assert orders.status(first) == 200 and orders.status(second) == 404
    assert haproxy_states(r) == {"app1": "UP", "app2": "UP"}
    assert versions(r) == release and through_haproxy(r) == set(release.values())
    record = evidence(r)[-1]
    assert record["kind"] == "fleet_restore" and record["outcome"] == "ok"
    assert record["data"]["reported"]["backup"] == backup and set(record["data"]["hosts"]) >= {"app1", "app2"}
    assert record["data"]["changed"] > 0 and record["data"]["extra_vars"]["erp_restore_confirm"] is True
