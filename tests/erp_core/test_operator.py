"""What an operator relies on: /healthz, /readyz, /metrics, the maintenance switch, schema status."""

import datetime as dt

from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from erp_core.db import code_head, schema_status
from erp_core.models import SchemaMigration


def test_healthz_touches_nothing(sqlite_erp):
    sqlite_erp.db.engine.dispose()
    r = sqlite_erp.client.get("/healthz")
    assert r.status_code == 200 and r.json["status"] == "ok"


def test_readyz_reports_database_schema_and_maintenance(erp):
    r = erp.client.get("/readyz")
    assert r.status_code == 200 and r.json["ready"] is True
    assert r.json["checks"]["schema"]["current"] == code_head()
    erp.req("PUT", "/system/maintenance", json={"enabled": True, "reason": "upgrade to 1.1"}, expect=200)
    r = erp.client.get("/readyz")
    assert r.status_code == 503 and r.json["checks"]["maintenance"]["reason"] == "upgrade to 1.1"


def test_maintenance_makes_the_erp_read_only(erp):
    wh = erp.warehouse()
    erp.req("PUT", "/system/maintenance", json={"enabled": True, "reason": "backup"}, expect=200)
    r = erp.req("POST", "/warehouses", json={"code": "W2", "name": "x"})
    assert r.status_code == 503 and r.headers["Retry-After"] and "backup" in r.json["detail"]
    assert erp.get("/stock", query={"warehouse_id": wh})["total"] == 0  # reads still work
    erp.req("PUT", "/system/maintenance", json={"enabled": False}, expect=200)
    erp.post("/warehouses", {"code": "W2", "name": "x"})


def test_a_refused_write_says_when_maintenance_is_expected_to_end(erp):
    """Retry-After: the seconds left until the expected end (rounded up, at least 1), else the seconds
    it was switched on with, else 60."""
    import time

    from erp_core.services import maintenance

    def retry_after(**how) -> str:
        with erp.db.session(write=True) as s:
            maintenance.set_state(s, True, "upgrade", **how)
        r = erp.req("POST", "/warehouses", json={"code": "W9", "name": "x"})
        assert r.status_code == 503
        return r.headers["Retry-After"]

    erp.token("admin")  # logged in before: the argon2 check is not part of the request timed below
    assert retry_after(until=time.time() + 10.5) in ("10", "11")  # rounded up, less the time the request took
    assert retry_after(until=time.time() - 30) == "1"  # longer than expected: still at least 1 s
    assert retry_after(retry_after=7) == "7"
    assert retry_after() == "60"


def _record(erp, revision, stage):
    with erp.db.session() as s:
        s.add(SchemaMigration(revision=revision, stage=stage, applied_at=dt.datetime.now(dt.timezone.utc)))
        s.execute(text("UPDATE alembic_version SET version_num = :r"), {"r": revision})


def test_schema_ahead_by_expand_stages_is_supported(sqlite_erp):
    _record(sqlite_erp, "9001", "expand")
    _record(sqlite_erp, "9002", "backfill")
    status = schema_status(sqlite_erp.db.engine)
    assert status.supported and [m["stage"] for m in status.newer] == ["expand", "backfill"]
    assert sqlite_erp.client.get("/readyz").status_code == 200


def test_schema_ahead_by_a_contract_stage_is_not_supported(sqlite_erp):
    _record(sqlite_erp, "9001", "expand")
    _record(sqlite_erp, "9002", "contract")
    r = sqlite_erp.client.get("/readyz")
    assert r.status_code == 503 and "9002" in r.json["checks"]["schema"]["reason"]


def test_unknown_revision_without_recorded_stages_is_not_supported(sqlite_erp):
    with sqlite_erp.db.session() as s:
        s.execute(text("UPDATE alembic_version SET version_num = 'elsewhere'"))
    status = schema_status(sqlite_erp.db.engine)
    assert not status.supported and "elsewhere" in status.reason


def test_unmigrated_database_is_not_ready(sqlite_erp):
    with sqlite_erp.db.session() as s:
        s.execute(text("DROP TABLE alembic_version"))
    r = sqlite_erp.client.get("/readyz")
    assert r.status_code == 503 and "erpctl erp migrate" in r.json["checks"]["schema"]["reason"]


def test_metrics_by_route_template_and_business_gauges(erp):
    wh = erp.warehouse()
    erp.get("/stock", query={"warehouse_id": wh})
    erp.req("GET", "/sales-orders/999", expect=404)
    r = erp.client.get("/metrics")
    assert r.status_code == 200
    families = {f.name: f for f in text_string_to_metric_families(r.get_data(as_text=True))}
    reqs = {(s.labels["route"], s.labels["status"]) for s in families["erp_http_requests"].samples
            if s.name == "erp_http_requests_total"}
    assert ("/api/v1/sales-orders/<int:order_id>", "404") in reqs
    assert ("/api/v1/warehouses", "201") in reqs
    assert "erp_http_request_duration_seconds" in families
    assert families["erp_database_up"].samples[0].value == 1
    assert families["erp_maintenance_mode"].samples[0].value == 0
    assert "erp_low_stock_products" in families
