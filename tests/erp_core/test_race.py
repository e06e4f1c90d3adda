"""Races over real HTTP: the ERP served by waitress (16 threads), requests fired together from threads.

The last unit in a warehouse goes to exactly one of N simultaneous deliveries (or transfers); the
others get 409 problem+json naming the missing stock; on-hand never goes below zero and the books
stay consistent (erp_core.invariants). Idempotency-Key: a retried create replays the first answer,
a reused key with another body is refused, and simultaneous retries store one order.
"""

from __future__ import annotations

import threading
import uuid
from decimal import Decimal

import pytest
import requests
from sqlalchemy import func, select

from erp_core import invariants
from erp_core.models import SalesOrder, StockLevel, StockMove
from erp_core.serve import Server
from tests.conftest import Erp, fresh_database_url

N = 8          # simultaneous requests per race
ROUNDS = 3     # races per test
PROBLEM = "application/problem+json"


class Live:
    """The ERP behind a real waitress server, with the in-process harness for setup."""

    def __init__(self, erp: Erp, server: Server):
        self.erp, self.server = erp, server

    def headers(self, role: str, **extra) -> dict:
        return {"Authorization": f"Bearer {self.erp.token(role)}", **extra}

    def post(self, path: str, body, role: str, headers=None) -> requests.Response:
        return requests.post(f"{self.server.url}/api/v1{path}", json=body, timeout=60,
                             headers={**self.headers(role), **(headers or {})})

    def together(self, calls) -> list[requests.Response]:
        """Run the calls (thunks) at the same moment, one thread each; answers in call order."""
        barrier = threading.Barrier(len(calls))
        results: list = [None] * len(calls)

        def run(i, call):
            try:
                barrier.wait(timeout=30)
                results[i] = call()
            except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
                results[i] = exc

        threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        errors = [r for r in results if not isinstance(r, requests.Response)]
        assert not errors, f"requests failed: {errors}"
        return results

    def check_invariants(self) -> None:
        with self.erp.db.session(write=False) as s:
            violations = invariants.check_all(s)
        assert violations == [], violations


@pytest.fixture
def live(backend, request, tmp_path):
    erp = Erp(fresh_database_url(backend, request, tmp_path), backend)
    server = Server(erp.app, port=0, threads=16).start()
    yield Live(erp, server)
    server.stop()
    erp.close()


def _assert_insufficient_stock(r: requests.Response, sku: str) -> None:
    assert r.status_code == 409, r.text
    assert r.headers["Content-Type"].startswith(PROBLEM), r.headers
    body = r.json()
    assert body["title"] == "Insufficient stock" and body["type"].endswith("/insufficient-stock"), body
    assert body["sku"] == sku and Decimal(body["available"]) == 0, body
    assert sku in body["detail"] and body["fix"], body


def _on_hand(erp: Erp, product: int, warehouse: int | None = None) -> list[Decimal]:
    with erp.db.session(write=False) as s:
        stmt = select(StockLevel.quantity).where(StockLevel.product_id == product)
        if warehouse is not None:
            stmt = stmt.where(StockLevel.warehouse_id == warehouse)
        return list(s.scalars(stmt))


def _moves(erp: Erp, product: int, kind: str) -> int:
    with erp.db.session(write=False) as s:
        return s.scalar(select(func.count()).select_from(StockMove)
                        .where(StockMove.product_id == product, StockMove.kind == kind))


def test_last_unit_goes_to_exactly_one_delivery(live):
    erp = live.erp
    wh, cust, sup = erp.warehouse(), erp.customer(), erp.supplier()
    for round_ in range(ROUNDS):
        sku = f"LAST{round_}"
        product = erp.product(sku, "10.00")
        erp.stock_in(sup, wh, [(product, 1, "4.00")])
        orders = []
        for _ in range(N):
            so = erp.post("/sales-orders", {"partner_id": cust, "warehouse_id": wh,
                                            "lines": [{"product_id": product, "quantity": "1"}]}, role="sales")
            erp.post(f"/sales-orders/{so['id']}/confirm", role="sales", expect=200)
            orders.append(so["id"])

        answers = live.together([lambda o=o: live.post(f"/sales-orders/{o}/deliver", {}, "warehouse")
                                 for o in orders])

        statuses = sorted(r.status_code for r in answers)
        assert statuses == [200] + [409] * (N - 1), [(r.status_code, r.text[:200]) for r in answers]
        winner = next(r for r in answers if r.status_code == 200).json()
        assert winner["state"] == "delivered"
        for r in answers:
            if r.status_code == 409:
                _assert_insufficient_stock(r, sku)
        assert _on_hand(erp, product) == [Decimal("0")]
        assert erp.get("/stock", query={"product_id": product})["items"][0]["quantity"] == "0.000"
        assert _moves(erp, product, "delivery") == 1
        states = sorted(erp.get(f"/sales-orders/{o}")["state"] for o in orders)
        assert states == ["confirmed"] * (N - 1) + ["delivered"]
        live.check_invariants()


def test_last_unit_goes_to_exactly_one_transfer(live):
    erp = live.erp
    source, sup = erp.warehouse("SRC"), erp.supplier()
    targets = [erp.warehouse("DST1"), erp.warehouse("DST2")]
    for round_ in range(ROUNDS):
        sku = f"MOVE{round_}"
        product = erp.product(sku, "10.00")
        erp.stock_in(sup, source, [(product, 1, "4.00")])
        body = lambda i: {"product_id": product, "quantity": "1", "from_warehouse_id": source,  # noqa: E731
                          "to_warehouse_id": targets[i % 2], "reference": f"race {round_}/{i}"}

        answers = live.together([lambda i=i: live.post("/stock/transfers", body(i), "warehouse") for i in range(N)])

        statuses = sorted(r.status_code for r in answers)
        assert statuses == [201] + [409] * (N - 1), [(r.status_code, r.text[:200]) for r in answers]
        for r in answers:
            if r.status_code == 409:
                _assert_insufficient_stock(r, sku)
        assert _on_hand(erp, product, source) == [Decimal("0")]
        assert sum(_on_hand(erp, product)) == 1  # the unit moved, it was not duplicated
        assert _moves(erp, product, "transfer") == 1
        live.check_invariants()


# ---- Idempotency-Key ---------------------------------------------------------------------------

def _order_body(erp: Erp, sku: str) -> dict:
    wh, cust = erp.warehouse(f"W{sku}"), erp.customer(f"C{sku}")
    product = erp.product(sku, "10.00")
    return {"partner_id": cust, "warehouse_id": wh, "lines": [{"product_id": product, "quantity": "2"}]}


def _orders(erp: Erp) -> int:
    with erp.db.session(write=False) as s:
        return s.scalar(select(func.count()).select_from(SalesOrder))


def test_idempotency_key_replays_the_first_answer(erp):
    body = _order_body(erp, "IDEM")
    key = {"Idempotency-Key": str(uuid.uuid4())}

    first = erp.req("POST", "/sales-orders", json=body, headers=key, role="sales", expect=201)
    again = erp.req("POST", "/sales-orders", json=body, headers=key, role="sales", expect=201)
    assert again.json["id"] == first.json["id"] and again.json == first.json
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert _orders(erp) == 1

    other = {**body, "notes": "a different order"}
    r = erp.req("POST", "/sales-orders", json=other, headers=key, role="sales")
    assert r.status_code == 422 and r.mimetype == PROBLEM, r.get_data(as_text=True)
    assert r.json["field"] == "Idempotency-Key" and r.json["fix"]
    assert _orders(erp) == 1

    # keys belong to the user who sent them: the same key from someone else is a new request
    mine = erp.req("POST", "/sales-orders", json=body, headers=key, role="admin", expect=201)
    assert mine.json["id"] != first.json["id"] and "Idempotent-Replayed" not in mine.headers
    assert _orders(erp) == 2

    # without a key, the same body is simply another order
    erp.req("POST", "/sales-orders", json=body, role="sales", expect=201)
    assert _orders(erp) == 3

    r = erp.req("POST", "/sales-orders", json=body, headers={"Idempotency-Key": "k" * 129}, role="sales")
    assert r.status_code == 422 and r.json["field"] == "Idempotency-Key"


def test_simultaneous_retries_store_one_order(live):
    erp = live.erp
    body = _order_body(erp, "RETRY")
    for round_ in range(ROUNDS):
        before = _orders(erp)
        key = {"Idempotency-Key": f"retry-{round_}-{uuid.uuid4()}"}

        answers = live.together([lambda: live.post("/sales-orders", body, "sales", key) for _ in range(N)])

        created = [r for r in answers if r.status_code == 201]
        refused = [r for r in answers if r.status_code != 201]
        assert created, [(r.status_code, r.text[:200]) for r in answers]
        assert len({r.json()["id"] for r in created}) == 1, [r.json()["id"] for r in created]
        # a retry that met the first one still in flight is told to retry, never a second order
        for r in refused:
            assert r.status_code == 409 and r.headers["Content-Type"].startswith(PROBLEM), r.text
            assert r.json()["field"] == "Idempotency-Key"
        assert sum(r.headers.get("Idempotent-Replayed") != "true" for r in created) == 1  # the original
        assert _orders(erp) == before + 1
        # and once the first has finished, a retry replays it
        late = live.post("/sales-orders", body, "sales", key)
        assert late.status_code == 201 and late.json()["id"] == created[0].json()["id"]
        assert late.headers.get("Idempotent-Replayed") == "true"
    live.check_invariants()
