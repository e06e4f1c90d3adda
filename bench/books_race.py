"""Race every stock operation on the same products, many rounds, and count what happened.

Each round: two products with stock in two warehouses, then ten operations at once, one thread and one
database session each, through the same unit of work as the API (erp_core.db.retrying): two receipts,
two deliveries, two cancellations of the orders being delivered, two transfers in opposite directions
and two stocktakes. After each round the invariants run (the ledger against its subledgers included).
Prints the outcome of each operation, the transient conflicts the retry loop met (deadlocks,
serialization failures: 0 expected with the lock order), the 409s that surfaced and the rounds whose
invariants broke (0 expected).

    python bench/books_race.py                          # SQLite and PostgreSQL, 200 rounds each
    python bench/books_race.py --backends sqlite --rounds 50 --json
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile
import threading
import time
import uuid
from decimal import Decimal

from sqlalchemy import create_engine, event, text

from erp_core import crypto, invariants
from erp_core.db import Database, is_transient, migrate, retrying
from erp_core.errors import ErpError
from erp_core.services import masterdata, purchasing, sales, stock, stocktakes

PG_URL = os.environ.get("ERPCTL_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def _po(s, sup, wh, lines):
    po = purchasing.create(s, {"partner_id": sup, "warehouse_id": wh, "lines": [
        {"product_id": p, "quantity": Decimal(q), "unit_price": Decimal(c)} for p, q, c in lines]})
    purchasing.confirm(s, po.id)
    return po.id


def _round(db: Database, r: int, ids: dict) -> list:
    """Set one round up; its ten operations as (name, callable taking a session)."""
    w1, w2, cust, sup = ids["w1"], ids["w2"], ids["cust"], ids["sup"]
    with db.session() as s:
        p, q = (masterdata.create_product(s, {"sku": f"{n}{r}", "name": f"{n}{r}", "sale_price": Decimal("10"),
                                              "tax_code": "VAT13"}).id for n in ("P", "Q"))
        for wh, lines in ((w1, [(p, 6, "1.00"), (q, 6, "1.00")]), (w1, [(p, 1, "1.01")]),
                          (w2, [(p, 2, "1.02"), (q, 2, "1.02")])):
            purchasing.receive(s, _po(s, sup, wh, lines))
        pos = [_po(s, sup, w1, [(p, 2, "1.01"), (q, 1, "1.03")]), _po(s, sup, w1, [(q, 3, "0.99"), (p, 1, "1.07")])]
        sos = []
        for lines in ([(q, 3), (p, 4)], [(p, 3), (q, 4)]):
            so = sales.create(s, {"partner_id": cust, "warehouse_id": w1, "lines": [
                {"product_id": i, "quantity": Decimal(n)} for i, n in lines]})
            sales.confirm(s, so.id)
            sos.append(so.id)
        sts = [stocktakes.create(s, w1, [{"product_id": q, "counted_quantity": "2"}, {"product_id": p, "counted_quantity": "3"}]).id,
               stocktakes.create(s, w2, [{"product_id": p, "counted_quantity": "1"}, {"product_id": q, "counted_quantity": "2.5"}]).id]
    ops = [("receive", lambda s, i=i: purchasing.receive(s, i)) for i in pos]
    ops += [(name, lambda s, i=i, f=f: f(s, i)) for i in sos for name, f in (("deliver", sales.deliver),
                                                                             ("cancel", sales.cancel))]
    ops += [("transfer", lambda s: stock.transfer(s, p, 1, w1, w2)), ("transfer", lambda s: stock.transfer(s, p, 2, w2, w1))]
    ops += [("stocktake", lambda s, i=i: stocktakes.post(s, i)) for i in sts]
    return ops


def _together(db: Database, ops: list, outcomes: collections.Counter) -> None:
    barrier = threading.Barrier(len(ops))

    def run(name, op):
        barrier.wait()
        try:
            retrying(lambda: _in_session(db, op))
            outcomes[f"{name} ok"] += 1
        except ErpError as exc:
            outcomes[f"{name} {exc.status} {exc.title}"] += 1
        except Exception as exc:  # noqa: BLE001 - counted, the bench goes on
            outcomes[f"{name} error {type(exc).__name__}"] += 1

    threads = [threading.Thread(target=run, args=op) for op in ops]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def _in_session(db, op):
    with db.session() as s:
        op(s)


def run_backend(url: str, rounds: int) -> dict:
    migrate(url)
    db = Database(url)
    transient = []
    event.listen(db.engine, "handle_error",
                 lambda ctx: transient.append(1) if is_transient(ctx.original_exception) else None)
    with db.session() as s:
        ids = {"w1": masterdata.create_warehouse(s, {"code": "W1", "name": "W1"}).id,
               "w2": masterdata.create_warehouse(s, {"code": "W2", "name": "W2"}).id,
               "cust": masterdata.create_partner(s, {"code": "C", "name": "C", "is_customer": True}).id,
               "sup": masterdata.create_partner(s, {"code": "S", "name": "S", "is_supplier": True}).id}
    outcomes, broken, started = collections.Counter(), [], time.monotonic()
    for r in range(rounds):
        _together(db, _round(db, r, ids), outcomes)
        with db.session(write=False) as s:
            found = invariants.check_all(s)
        if found:
            broken.append({"round": r, "violations": [v.as_dict() for v in found[:5]]})
    db.dispose()
    return {"rounds": rounds, "seconds": round(time.monotonic() - started, 1), "outcomes": dict(sorted(outcomes.items())),
            "transient_conflicts_met": len(transient), "rounds_with_violations": len(broken), "broken": broken[:5]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backends", default="sqlite,postgres")
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--pg-url", default=PG_URL)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    crypto.configure("bench-key")
    results = {}
    for backend in args.backends.split(","):
        if backend == "sqlite":
            with tempfile.TemporaryDirectory() as tmp:
                results[backend] = run_backend(f"sqlite:///{tmp}/erp.sqlite3", args.rounds)
            continue
        name = f"erp_books_race_{uuid.uuid4().hex[:8]}"
        admin = create_engine(args.pg_url, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as c:
                c.execute(text(f'CREATE DATABASE "{name}"'))
        except Exception as exc:  # noqa: BLE001 - reported, the other backends still run
            results[backend] = {"skipped": f"PostgreSQL not reachable: {exc}"}
            continue
        try:
            results[backend] = run_backend(args.pg_url.rsplit("/", 1)[0] + f"/{name}", args.rounds)
        finally:
            with admin.connect() as c:
                c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for backend, res in results.items():
            print(f"== {backend}: " + ", ".join(f"{k} {v}" for k, v in res.items() if k not in ("outcomes", "broken")))
            for outcome, n in res.get("outcomes", {}).items():
                print(f"   {n:6d}  {outcome}")
    return 0 if all(not r.get("rounds_with_violations") and not r.get("transient_conflicts_met")
                    for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
