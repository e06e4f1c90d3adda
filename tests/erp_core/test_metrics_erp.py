"""The ERP's /metrics: request and query instruments, the pool, business gauges, build info; clean
for promtool; and an app built without instrumentation."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from erp_core import __version__
from erp_core.app import create_app
from erp_core.config import Settings
from erp_core.db import Database, code_head
from erp_core.domain.states import SALES_ORDER
from erp_core.metrics import BusinessCollector
from tests.conftest import FIELD_KEY
from tests.controlplane.monitoring.helpers import families, promtool_check_metrics, sample


METRICS_TOKEN = "metrics token of the tests"


@pytest.fixture(autouse=True)
def metrics_token(monkeypatch):
    """A metrics token, so that /metrics has the business figures too (test_metrics_token.py: without)."""
    monkeypatch.setenv("ERP_METRICS_TOKEN", METRICS_TOKEN)


def scrape(erp) -> tuple[str, dict]:
    r = erp.client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert r.status_code == 200
    text = r.get_data(as_text=True)
    return text, families(text)


def test_requests_by_route_template_method_and_status(sqlite_erp):
    e = sqlite_erp
    e.warehouse()
    prod = e.product()
    e.get(f"/products/{prod}")
    e.req("GET", "/sales-orders/424242", expect=404)
    e.client.get("/no/such/page")
    e.client.open("/healthz", method="PURGE")
    _, fams = scrape(e)
    assert sample(fams, "erp_http_requests_total", method="POST", route="/api/v1/warehouses", status="201") == 1
    assert sample(fams, "erp_http_requests_total", method="GET", route="/api/v1/products/<int:product_id>",
                  status="200") == 1
    assert sample(fams, "erp_http_requests_total", method="GET", route="/api/v1/sales-orders/<int:order_id>",
                  status="404") == 1
    assert sample(fams, "erp_http_requests_total", method="GET", route="unmatched", status="404") == 1
    # a method no route takes: no rule matched, so no route template either
    assert sample(fams, "erp_http_requests_total", method="OTHER", route="unmatched", status="405") == 1
    routes = {s.labels["route"] for s in fams["erp_http_requests"].samples}
    assert not [r for r in routes if re.search(r"/\d+(/|$)", r)]  # ids never become label values
    count = sample(fams, "erp_http_request_duration_seconds", "erp_http_request_duration_seconds_count",
                   method="POST", route="/api/v1/warehouses")
    inf = sample(fams, "erp_http_request_duration_seconds", "erp_http_request_duration_seconds_bucket",
                 method="POST", route="/api/v1/warehouses", le="+Inf")
    assert count == inf == 1


def test_unexpected_errors_are_counted(tmp_path, request):
    from tests.conftest import Erp, fresh_database_url

    e = Erp(fresh_database_url("sqlite", request, tmp_path), "sqlite")
    try:
        def boom():
            raise RuntimeError("a bug")

        e.app.add_url_rule("/boom/<int:n>", "boom", boom)
        assert e.client.get("/boom/1").status_code == 500
        assert e.client.get("/boom/2").status_code == 500
        e.req("GET", "/sales-orders/1", expect=404)  # a handled error is not an exception
        _, fams = scrape(e)
        assert sample(fams, "erp_http_exceptions_total", route="/boom/<int:n>") == 2
        assert sample(fams, "erp_http_requests_total", method="GET", route="/boom/<int:n>", status="500") == 2
        assert len(fams["erp_http_exceptions"].samples) == 1
    finally:
        e.close()


def test_database_query_time_and_pool(sqlite_erp):
    _, before = scrape(sqlite_erp)
    n0 = sample(before, "erp_db_query_duration_seconds", "erp_db_query_duration_seconds_count")
    sqlite_erp.get("/sales-orders")
    _, after = scrape(sqlite_erp)
    n1 = sample(after, "erp_db_query_duration_seconds", "erp_db_query_duration_seconds_count")
    assert n1 > n0
    assert sample(after, "erp_db_query_duration_seconds", "erp_db_query_duration_seconds_sum") > 0
    # While scraping, the collector's own connection is in use; in between, connections go idle.
    assert sample(after, "erp_db_pool_connections", state="in_use") == 0
    assert sample(after, "erp_db_pool_connections", state="idle") >= 1
    pool = sqlite_erp.db.engine.pool
    assert sample(after, "erp_db_pool_connections", state="idle") == pool.checkedin()


def test_failed_statements_and_executemany_are_timed_outside_requests_too(sqlite_erp):
    import pytest
    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    registry = sqlite_erp.app.extensions["erp_metrics_registry"]

    def count():  # each read runs the business gauges' own statements after reading the histogram
        return registry.get_sample_value("erp_db_query_duration_seconds_count")

    c0 = count()
    scrape_own = count() - c0  # what one read adds by itself
    c1 = count()
    with pytest.raises(OperationalError):
        with sqlite_erp.db.session() as s:
            s.execute(text("SELECT no_such_column FROM sales_orders"))
    assert count() - c1 - scrape_own == 2  # BEGIN and the failing SELECT
    c2 = count()
    with sqlite_erp.db.session() as s:
        s.execute(text("CREATE TEMP TABLE t (x INTEGER)"))
        s.execute(text("INSERT INTO t (x) VALUES (:x)"), [{"x": i} for i in range(5)])  # one executemany
    assert count() - c2 - scrape_own == 3  # BEGIN, CREATE, INSERT


def test_business_gauges_and_build_info(erp):
    _, fams = scrape(erp)
    assert {s.labels["state"]: s.value for s in fams["erp_sales_orders"].samples} == dict.fromkeys(
        SALES_ORDER.states, 0)
    assert sample(fams, "erp_sales_orders_today") == 0
    wh, cust, prod = erp.warehouse(), erp.customer(), erp.product()
    erp.post("/sales-orders", {"partner_id": cust, "warehouse_id": wh,
                               "lines": [{"product_id": prod, "quantity": "1"}]}, role="sales")
    text, fams = scrape(erp)
    assert sample(fams, "erp_sales_orders", state="draft") == 1
    assert sample(fams, "erp_sales_orders_today") == 1
    assert sample(fams, "erp_database_up") == 1
    assert sample(fams, "erp_schema_supported") == 1
    assert sample(fams, "erp_maintenance_mode") == 0
    assert sample(fams, "erp_receivables_open_amount") == 0
    assert sample(fams, "erp_low_stock_products") == 0
    assert sample(fams, "erp_build_info", version=__version__, schema_revision=code_head()) == 1
    promtool_check_metrics(text)


def test_low_stock_counts_products_below_a_reorder_rule(sqlite_erp):
    from erp_core.models import ReorderRule

    e = sqlite_erp
    wh1, wh2, prod = e.warehouse("W1"), e.warehouse("W2"), e.product()
    with e.db.session() as s:
        for wh in (wh1, wh2):
            s.add(ReorderRule(product_id=prod, warehouse_id=wh, min_quantity=5, reorder_quantity=10))
    _, fams = scrape(e)
    assert sample(fams, "erp_low_stock_products") == 1  # one product, below in two warehouses


def test_database_down_still_answers(tmp_path):
    db = Database("postgresql://nobody@127.0.0.1:1/nothing", connect_args={"connect_timeout": 2})
    try:
        fams = {}
        for fam in BusinessCollector(db).collect():
            fams[fam.name] = fam
        assert fams["erp_database_up"].samples[0].value == 0
        assert fams["erp_build_info"].samples[0].labels == {"version": __version__, "schema_revision": "unknown"}
        assert set(fams) == {"erp_database_up", "erp_build_info"}
    finally:
        db.dispose()


def test_the_scrape_is_clean_for_promtool_after_mixed_traffic(sqlite_erp):
    e = sqlite_erp
    e.warehouse()
    for path in ("/sales-orders", "/products", "/reports/trial-balance", "/sales-orders/9"):
        e.req("GET", path)
    e.client.get("/readyz")
    e.client.get("/missing")
    text, _ = scrape(e)
    promtool_check_metrics(text)
    assert "_created" not in text  # no extra series per label set


def test_an_app_without_instrumentation(sqlite_erp, tmp_path):
    db = Database(sqlite_erp.url)
    try:
        app = create_app(Settings(sqlite_erp.url, field_key=FIELD_KEY, testing=True), db, instrument=False)
        client = app.test_client()
        assert client.get("/metrics").status_code == 404
        assert client.get("/readyz").status_code == 200
        assert "erp_instruments" not in app.extensions
        assert not db.__dict__.get("_erp_instrumented_by")
    finally:
        db.dispose()


def test_orders_today_is_utc_midnight_based(sqlite_erp):
    from erp_core.models import SalesOrder

    e = sqlite_erp
    wh, cust, prod = e.warehouse(), e.customer(), e.product()
    order = e.post("/sales-orders", {"partner_id": cust, "warehouse_id": wh,
                                     "lines": [{"product_id": prod, "quantity": "1"}]}, role="sales")
    with e.db.session() as s:
        s.get(SalesOrder, order["id"]).order_date = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=1, hours=1)
    _, fams = scrape(e)
    assert sample(fams, "erp_sales_orders_today") == 0 and sample(fams, "erp_sales_orders", state="draft") == 1
