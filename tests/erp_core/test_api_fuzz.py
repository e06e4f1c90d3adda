"""Schemathesis against /api/v1/openapi.json: no generated input, valid or not, gets a 5xx.

Every documented operation is fuzzed in-process (WSGI) as the admin, with positive and negative
data, on a database seeded so that ids 1..3 exist for warehouses, partners, products, orders,
invoices, journal entries and stocktakes; half the generated path ids land on them, so requests
reach the services and not only the 404 path. Responses must match the documented status codes,
content types and schemas, invalid input must be refused, and every error is application/problem+json
naming what is wrong. SQLite gets the full pass; PostgreSQL (which refuses NUL characters and
out-of-range numbers where SQLite stores them) a smaller one. ERP_FUZZ_EXAMPLES=500 for a long hunt.

The last test sends what a generator does not think of: absurdly long ids, deeply nested JSON,
NaN, NUL characters, lone surrogates, nulls for NOT NULL columns.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter, defaultdict

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import positive_data_acceptance
from sqlalchemy import update

from erp_core.models import ApiToken, Partner, Product, User
from erp_core.services import maintenance
from tests.conftest import Erp, fresh_database_url

OPENAPI = "/api/v1/openapi.json"
PROBLEM = "application/problem+json"

# Operations that can pull the ground from under later cases (revoke the fuzzer's token, end its sessions,
# reset its password, demote or deactivate its user, switch on read-only mode, deactivate the seeded partners and products): after
# any of them the guard puts things back, so later cases still reach the services.
FOOTING = {"POST /api/v1/auth/logout", "PATCH /api/v1/users/{user_id}", "PUT /api/v1/system/maintenance",
           "PATCH /api/v1/partners/{partner_id}", "PATCH /api/v1/products/{product_id}",
           "POST /api/v1/me/logout-everywhere", "DELETE /api/v1/me/sessions/{session_id}", "POST /api/v1/me/password",
           "POST /api/v1/users/{user_id}/password-reset"}
SEEDED = (1, 2, 3)


def seed(erp: Erp) -> None:
    """Records with ids 1..3 in every table an operation addresses by id, in varied states."""
    wh = [erp.warehouse(f"WH{i}") for i in SEEDED]
    # partners 1..3 are customers and suppliers both, so any of them fits a sales or a purchase order
    c1, c2, sup = [erp.customer(f"C{i}", is_supplier=True, email=f"c{i}@example.com", tax_id=f"ATU1234567{i}")
                   for i in SEEDED]
    products = [erp.product(f"P{i}", f"{i}0.00") for i in (1, 2, 3)]
    # purchase order 1: received and billed (invoice 1); 2: confirmed; 3: draft
    po1 = erp.stock_in(sup, wh[0], [(p, 50, "4.00") for p in products])
    erp.post(f"/purchase-orders/{po1['id']}/bill", {"supplier_reference": "S-1"})
    for confirm in (True, False):
        line = {"product_id": products[0], "quantity": "2", "unit_price": "3.00"}
        po = erp.post("/purchase-orders", {"partner_id": sup, "warehouse_id": wh[1], "lines": [line]})
        if confirm:
            erp.post(f"/purchase-orders/{po['id']}/confirm", expect=200)
    # sales order 1: delivered and invoiced (invoice 2, part paid); 2: delivered; 3: confirmed; 4: draft
    sos = []
    for i in range(4):
        sos.append(erp.post("/sales-orders", {"partner_id": c1 if i % 2 == 0 else c2, "warehouse_id": wh[0],
                                              "lines": [{"product_id": products[i % 3], "quantity": "1"}]})["id"])
    for so in sos[:3]:
        erp.post(f"/sales-orders/{so}/confirm", expect=200)
    for so in sos[:2]:
        erp.post(f"/sales-orders/{so}/deliver", {}, expect=200)
    inv = erp.post(f"/sales-orders/{sos[0]}/invoice")
    erp.post(f"/invoices/{inv['id']}/payments", {"amount": "1.00"})
    erp.post("/journal-entries", {"memo": "opening capital", "lines": [
        {"account": "1002", "debit": "1000.00"}, {"account": "4001", "credit": "1000.00"}]})
    erp.post("/stocktakes", {"warehouse_id": wh[0], "counts": [{"product_id": products[0], "counted_quantity": "49"}]})
    erp.req("PUT", "/stock/reorder-rules", json={"product_id": products[1], "warehouse_id": wh[0],
                                                "min_quantity": "100", "reorder_quantity": "10"}, expect=200)
    erp.req("PUT", f"/partners/{c1}/prices", json={"product_id": products[0], "unit_price": "9.00"}, expect=200)
    # return 1: posted against purchase order 1 (debit note 1); 2: a draft against sales order 1
    ret = erp.post(f"/purchase-orders/{po1['id']}/returns", {"lines": [
        {"order_line_id": po1["lines"][0]["id"], "quantity": "1"}]})
    erp.post(f"/returns/{ret['id']}/post", {}, expect=200)
    so1 = erp.get(f"/sales-orders/{sos[0]}")
    erp.post(f"/sales-orders/{sos[0]}/returns", {"lines": [{"order_line_id": so1["lines"][0]["id"], "quantity": "1"}]})


class Guard:
    """Keeps the fuzzer's footing: its admin token unrevoked, its user an active admin, the seeded
    partners and products active, the ERP out of maintenance mode. Counts the answers per operation."""

    def __init__(self, erp: Erp):
        self.erp = erp
        self.token = erp.token("admin")
        self.seen: dict[str, Counter] = defaultdict(Counter)  # operation -> status codes answered

    def restore(self) -> None:
        token_hash = hashlib.sha256(self.token.encode()).hexdigest()
        with self.erp.db.session() as s:
            s.execute(update(ApiToken).where(ApiToken.token_hash == token_hash).values(revoked=False))
            s.execute(update(User).where(User.username == "admin").values(role="admin", active=True,
                                                                           must_change_password=False))
            s.execute(update(Partner).where(Partner.id.in_(SEEDED))
                      .values(active=True, is_customer=True, is_supplier=True))
            s.execute(update(Product).where(Product.id.in_(SEEDED)).values(active=True))
            maintenance.set_state(s, False)

    def assert_reached_the_services(self, schema) -> None:
        """A fuzz run that only ever met 401 (a broken token) or 404 would prove nothing."""
        operations = {op.ok().label for op in schema.get_all_operations()}
        assert set(self.seen) == operations, operations ^ set(self.seen)
        past_auth = {op for op, codes in self.seen.items() if set(codes) - {401, 403, 405}}
        assert past_auth == operations, f"never got past authentication: {sorted(operations - past_auth)} {[(o, dict(self.seen[o])) for o in operations - past_auth]}"
        succeeded = {op for op, codes in self.seen.items() if any(200 <= c < 300 for c in codes)}
        assert len(succeeded) >= 0.8 * len(operations), f"never succeeded: {sorted(operations - succeeded)}"


def errors_are_problem_json(ctx, response, case):
    """Every error answer is RFC 9457 problem details naming what went wrong."""
    if response.status_code >= 400:
        ctype = (response.headers.get("content-type") or [""])[0].split(";")[0].strip()
        assert ctype == PROBLEM, f"{response.status_code} answered with {ctype!r}, not {PROBLEM}"
        body = response.json()
        for key in ("type", "title", "status", "detail"):
            assert key in body, f"problem body lacks {key!r}: {body}"
        assert body["status"] == response.status_code, body


# Every check schemathesis has (not_a_server_error, status_code_conformance, content_type_conformance,
# response_headers_conformance, response_schema_conformance, negative_data_rejection, ignored_auth,
# missing_required_header, unsupported_method, ...) plus ours - except positive_data_acceptance: a
# request can fit the schema and still break a business rule no schema states (an unbalanced journal
# entry, an unknown tax code, a transfer to the same warehouse); those get 422 naming the field, rightly.
CHECKS = dict(additional_checks=[errors_are_problem_json], excluded_checks=[positive_data_acceptance])


def _schema(erp: Erp):
    seed(erp)
    guard = Guard(erp)
    # the admin's token for the documented bearer scheme: schemathesis sends it, and knows that it
    # does (a case with a missing or broken Authorization header is one it made on purpose)
    config = SchemathesisConfig.from_dict({"auth": {"openapi": {"bearer": {"bearer": guard.token}}}})
    schema = schemathesis.openapi.from_wsgi(OPENAPI, erp.app, config=config)

    @schema.hook
    def before_generate_path_parameters(context, strategy):
        # Half the valid path ids address a seeded record (1..3, or 4: absent or made by the fuzzer),
        # so bodies reach the services and not only the 404 path; the other half keep any id. Negative
        # path values (wrapped with their mutation metadata) are left as they are.
        names = [p.name for p in context.operation.path_parameters]
        if not names:
            return strategy
        seeded = st.fixed_dictionaries({name: st.integers(1, 4) for name in names})
        return strategy.flatmap(lambda value: st.just(value) if not isinstance(value, dict)
                                else st.one_of(st.just(value), seeded))

    return schema, guard


def _fuzz_target(backend: str, request, tmp_path):
    erp = Erp(fresh_database_url(backend, request, tmp_path), backend)
    schema, guard = _schema(erp)
    request.node.fuzz_guard = guard
    yield schema
    try:
        if not request.session.testsfailed:
            guard.assert_reached_the_services(schema)
    finally:
        erp.close()


@pytest.fixture
def fuzz_sqlite(request, tmp_path):
    yield from _fuzz_target("sqlite", request, tmp_path)


@pytest.fixture
def fuzz_postgres(request, tmp_path):
    yield from _fuzz_target("postgres", request, tmp_path)


def _run(case, request):
    guard: Guard = request.node.fuzz_guard
    try:
        response = case.call_and_validate(**CHECKS)
        guard.seen[case.operation.label][response.status_code] += 1
    finally:
        if case.operation.label in FOOTING:
            guard.restore()


# Examples per operation and generation mode; ERP_FUZZ_EXAMPLES=500 for a long hunt. 25 still reaches every
# operation past authentication and into the services (Guard.assert_reached_the_services checks it).
EXAMPLES = int(os.environ.get("ERP_FUZZ_EXAMPLES", "25"))
FUZZ = dict(deadline=None, derandomize=True, database=None, print_blob=True,
            suppress_health_check=list(HealthCheck))

sqlite_schema = schemathesis.pytest.from_fixture("fuzz_sqlite")
postgres_schema = schemathesis.pytest.from_fixture("fuzz_postgres")


@sqlite_schema.parametrize()
@settings(max_examples=EXAMPLES, **FUZZ)
def test_no_server_error_on_sqlite(case, request):
    _run(case, request)


@pytest.mark.postgres
@postgres_schema.parametrize()
@settings(max_examples=max(EXAMPLES // 5, 8), **FUZZ)
def test_no_server_error_on_postgres(case, request):
    _run(case, request)


# ---- what a generator does not think of -----------------------------------------------------------

def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


HOSTILE = [
    # (method, path, raw body, extra headers, expected status, field named in the problem)
    ("GET", "/products/" + "1" * 5000, None, {}, 404, None),          # Python refuses to read >4300 digits
    ("GET", "/products/" + "9" * 19, None, {}, 404, None),
    ("POST", "/sales-orders/" + "9" * 40 + "/confirm", "{}", {}, 404, None),
    ("POST", "/products", _nested(100_000), {}, 422, "body"),          # the JSON decoder recurses per level
    ("POST", "/imports/orders", '{"channel": "web", "warehouse_id": 1, "orders": [' + _nested(990) + "]}", {}, 422,
     "body"),
    ("POST", "/products", '{"sku": "A", "name": "x", "sale_price": NaN}', {}, 422, "sale_price"),
    ("POST", "/products", '{"sku": "A", "name": "x", "sale_price": 1e400}', {}, 422, "sale_price"),
    ("POST", "/products", '{"sku": "A", "name": "x", "sale_price": 10.5}', {}, 422, "sale_price"),  # not exact
    ("POST", "/products", '{"sku": "A", "name": "x", "sale_price": ' + "1" * 5000 + "}", {}, 422, "body"),
    ("POST", "/products", '{"sku": " A", "name": "x", "sale_price": "1"}', {}, 422, "sku"),
    ("POST", "/warehouses", '{"code": "A", "name": "x\\u0000"}', {}, 422, "name"),  # PostgreSQL text refuses NUL
    ("POST", "/warehouses", '{"code": "A", "name": "x\\ud800"}', {}, 422, "name"),  # a lone surrogate
    ("POST", "/warehouses", '{"code": "A", "name": "' + "x" * 100 + ' "}', {}, 422, "name"),  # longer than documented
    ("POST", "/warehouses", b'\xff\xfe{\x00}\x00', {}, 422, None),
    ("POST", "/warehouses", '{"code": "A",', {}, 400, "body"),  # malformed JSON
    ("POST", "/warehouses", b'{"code": "\xff"}', {}, 400, "body"),  # not UTF-8
    ("POST", "/partners", '{"code": "A", "name": "x", "is_customer": 1}', {}, 422, "is_customer"),
    ("POST", "/partners", '{"code": "A", "name": "x", "is_customer": true, "payment_terms_days": "30"}', {}, 422,
     "payment_terms_days"),
    ("PATCH", "/products/1", '{"name": null}', {}, 422, "name"),        # NOT NULL column: not a 409
    ("PATCH", "/users/1", '{"role": null}', {}, 422, "role"),
    ("GET", "/journal-entries?date_from=0", None, {}, 422, "date_from"),  # not 1970-01-01
    ("GET", "/journal-entries?date_from=2024-02-30", None, {}, 422, "date_from"),
    ("GET", "/products?active=1", None, {}, 422, "active"),
    ("GET", "/products?limit=5.0", None, {}, 422, "limit"),
    ("GET", "/products?q=%00", None, {}, 422, "q"),
    ("GET", "/sales-orders?state=shipped", None, {}, 422, "state"),
    ("POST", "/sales-orders", '{"partner_id": 1, "warehouse_id": 1, "lines": [{"product_id": 1, "quantity": "1"}]}',
     {"Idempotency-Key": "a\x00b"}, 422, "Idempotency-Key"),
    ("POST", "/sales-orders", '{"partner_id": 1, "warehouse_id": 1, "lines": [{"product_id": 1, "quantity": "1"}]}',
     {"Idempotency-Key": ""}, 422, "Idempotency-Key"),
    ("TRACE", "/products", None, {}, 405, None),
]


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def shared_erp(request, tmp_path_factory):
    """One seeded ERP per backend for the cases below: none of them may change anything."""
    erp = Erp(fresh_database_url(request.param, request, tmp_path_factory.mktemp("hostile")), request.param)
    seed(erp)
    yield erp
    erp.close()


@pytest.mark.parametrize("method, path, body, headers, status, field", HOSTILE,
                         ids=[f"{m} {p[:40]} {str(b)[:30]}" for m, p, b, *_ in HOSTILE])
def test_hostile_input_gets_a_problem_not_a_500(shared_erp, method, path, body, headers, status, field):
    erp = shared_erp
    r = erp.client.open("/api/v1" + path, method=method, data=body,
                        headers={"Authorization": f"Bearer {erp.token('admin')}",
                                 "Content-Type": "application/json", **headers})
    assert r.status_code == status, r.get_data(as_text=True)
    assert r.mimetype == PROBLEM and r.json["status"] == status and r.json["detail"]
    if field is not None:
        assert r.json["field"] == field, r.json
    if status == 405:
        assert "GET" in r.headers["Allow"]
