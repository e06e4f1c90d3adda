"""The ERP's /metrics: no business figures unless a metrics token is set, and then only with it;
CR/LF in the login's next and malformed e-mail addresses are 4xx naming the field."""

from __future__ import annotations

from erp_core.app import create_app
from erp_core.config import Settings
from tests.conftest import FIELD_KEY
from tests.controlplane.monitoring.helpers import families
from tests.erp_core.test_web import CSRF_RE

BUSINESS = {"erp_sales_orders", "erp_sales_orders_today", "erp_receivables_open_amount"}


def test_metrics_without_a_token_hold_no_business_figures(sqlite_erp):
    r = sqlite_erp.client.get("/metrics")
    assert r.status_code == 200
    names = set(families(r.get_data(as_text=True)))
    assert not BUSINESS & names and {"erp_database_up", "erp_low_stock_products"} <= names


def test_metrics_with_a_token_need_it_and_add_the_business_figures(sqlite_erp):
    app = create_app(Settings(sqlite_erp.url, field_key=FIELD_KEY, testing=True, metrics_token="s3cret-token"),
                     sqlite_erp.db)
    client = app.test_client()
    for header in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret-token"}):
        r = client.get("/metrics", headers=header)
        assert r.status_code == 401 and r.mimetype == "application/problem+json" and r.json["fix"]
    r = client.get("/metrics", headers={"Authorization": "Bearer s3cret-token"})
    assert r.status_code == 200 and BUSINESS <= set(families(r.get_data(as_text=True)))
    assert client.get("/healthz").status_code == 200 and client.get("/readyz").status_code == 200  # probes stay open


def test_cr_lf_in_next_is_a_4xx_naming_next(sqlite_erp):
    client = sqlite_erp.client
    token = CSRF_RE.search(client.get("/app/login").get_data(as_text=True)).group(1)
    for nxt in ("/app/x\r\nSet-Cookie: a=b", "/app/x\nLocation: //evil.example"):
        r = client.post("/app/login", query_string={"next": nxt},
                        data={"username": "admin", "password": "correct horse battery", "csrf_token": token})
        assert r.status_code == 422, r.status_code
        assert "next" in r.get_data(as_text=True) and "Set-Cookie" not in r.headers


def test_e_mail_addresses_are_validated(sqlite_erp):
    for bad in ("nope", "a@b", "a b@example.com", "x@example.com\r\nBcc: y@example.com"):
        r = sqlite_erp.req("POST", "/partners", json={"code": "C9", "name": "N", "is_customer": True, "email": bad})
        assert r.status_code == 422, r.get_data(as_text=True)
        assert "email" in r.get_data(as_text=True)
    ok = sqlite_erp.post("/partners", {"code": "C9", "name": "N", "is_customer": True, "email": "ap@example.com"})
    assert ok["email"] == "ap@example.com"
