#!/usr/bin/env python
"""Server time of every ERP page at a realistic size: does each main page answer within 300 ms?

The bench makes a fresh database, seeds it with `erpctl erp seed --scale N` (default 50; a whole process,
timed), adds one user per role, logs each in through the login form, then asks every GET page of the
web app (enumerated from its routes: a new page is measured without editing this file) `--repeat` times
as the first role allowed to see it, with the newest document of its kind where the route names one.
The time is the server's: the app in this process, asked through Flask's test client (no network, no
browser), from the request in to the last byte of the page out. Median and maximum per page, the page's
size, and whether the median is within --target (300 ms).
A PDF asked for again is served from the PDFs last made of the same HTML (erp_core/web/pdf_pages.py);
the bench empties that cache before each timed PDF request, so its figures are those of a document laid out
afresh (a new invoice printed for the first time), not of a repeat.

    python bench/pages.py                          # SQLite, scale 50
    python bench/pages.py --backend postgres --scale 50 --repeat 7 --json

Not a test: it asserts nothing and is never run by pytest. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from sqlalchemy import text  # noqa: E402

from reports import DEFAULT_PG_URL, database, drop, seed  # noqa: E402

PASSWORD = "bench pages password 2026"
ROLES = ("admin", "sales", "purchasing", "warehouse", "finance", "auditor")
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
# the newest row of the table a route's parameter names (by the route's path where one name serves two)
IDS = {"order_id": {"/app/sales": "sales_orders", "/app/purchases": "purchase_orders"},
       "invoice_id": "invoices", "partner_id": "partners", "product_id": "products", "user_id": "users",
       "change_id": "bank_detail_changes", "warehouse_id": "warehouses", "stocktake_id": "stocktakes"}


def _newest(db, table: str):
    with db.engine.connect() as c:
        return c.execute(text(f"SELECT max(id) FROM {table}")).scalar()  # noqa: S608 - names from IDS


def get_pages(app, db) -> list[str]:
    """Every GET page of the web app, its parameters filled with the newest row of their kind."""
    pages = []
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if not rule.rule.startswith("/app") or "GET" not in rule.methods or "<path:" in rule.rule:
            continue
        values = {}
        for arg in rule.arguments:
            table = IDS.get(arg)
            if isinstance(table, dict):
                table = next((t for prefix, t in table.items() if rule.rule.startswith(prefix)), None)
            values[arg] = _newest(db, table) if table else None
        if any(v is None for v in values.values()):
            continue
        path = rule.rule
        for arg, value in values.items():
            path = re.sub(rf"<(?:\w+:)?{arg}>", str(value), path)
        pages.append(path)
    return pages


def clients(app, db) -> dict:
    from erp_core.services import auth

    with db.session(actor="bench") as s:
        for role in ROLES:
            auth.add_user(s, f"bench_{role}", PASSWORD, role, full_name=f"Bench {role}")
    out = {}
    for role in ROLES:
        c = app.test_client()
        token = CSRF_RE.search(c.get("/app/login").get_data(as_text=True)).group(1)
        r = c.post("/app/login", data={"username": f"bench_{role}", "password": PASSWORD, "csrf_token": token})
        if r.status_code not in (200, 302, 303):
            raise SystemExit(f"cannot log in as {role}: {r.status_code}")
        out[role] = c
    return out


def measure(app, db, repeat: int) -> list[dict]:
    from erp_core.web import pdf_pages

    by_role = clients(app, db)
    rows = []
    for path in get_pages(app, db):
        for role, c in by_role.items():
            first = c.get(path)
            if first.status_code == 200:
                break
        else:
            rows.append({"page": path, "status": first.status_code})
            continue
        samples = []
        for _ in range(repeat):
            if path.endswith(".pdf"):
                pdf_pages._made.clear()  # noqa: SLF001 - time the layout, not the cache of repeats
            t0 = time.perf_counter()
            r = c.get(path)
            body = r.get_data()
            samples.append(time.perf_counter() - t0)
        rows.append({"page": path, "role": role, "status": r.status_code, "bytes": len(body),
                     "median_ms": round(statistics.median(samples) * 1000, 1),
                     "max_ms": round(max(samples) * 1000, 1)})
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    ap.add_argument("--pg-url", default=DEFAULT_PG_URL)
    ap.add_argument("--scale", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--target", type=float, default=300.0, help="ms of server time a page may take (median)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    os.environ.setdefault("ERP_MFA_ROLES", "none")  # the bench's users log in with their password alone
    from erp_core.app import create_app
    from erp_core.config import Settings
    from erp_core.db import Database

    from controlplane import layout

    data_root = Path(tempfile.mkdtemp(prefix="bench-pages-"))
    url, pg_name = database(args.backend, args.pg_url, data_root, args.scale)
    try:
        seconds = seed(url, data_root / f"scale-{args.scale}", args.scale)
        db = Database(url)
        try:
            key = (data_root / f"scale-{args.scale}" / layout.name("field_key")).read_text().strip()
            app = create_app(Settings(url, field_key=key), db)
            rows = measure(app, db, args.repeat)
        finally:
            db.dispose()
    finally:
        drop(args.pg_url, pg_name)
        shutil.rmtree(data_root, ignore_errors=True)
    timed = [r for r in rows if "median_ms" in r]
    over = [r for r in timed if r["median_ms"] > args.target]
    out = {"backend": args.backend, "scale": args.scale, "seed_seconds": round(seconds, 1), "repeat": args.repeat,
           "target_ms": args.target, "load_average": os.getloadavg(), "pages": rows,
           "over_target": [r["page"] for r in over]}
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"backend {args.backend}, scale {args.scale} (seeded in {seconds:.0f} s); median and max of "
          f"{args.repeat}; load average {out['load_average'][0]:.1f}")
    print(f"{'page':<44}{'role':>11}{'KB':>8}{'median':>10}{'max':>10}")
    for r in rows:
        if "median_ms" not in r:
            print(f"{r['page']:<44}{'':>11}  (HTTP {r['status']} for every role)")
            continue
        mark = "  OVER" if r in over else ""
        print(f"{r['page']:<44}{r['role']:>11}{r['bytes'] / 1024:>8.0f}{r['median_ms']:>8.1f}ms"
              f"{r['max_ms']:>8.1f}ms{mark}")
    print(f"{len(timed) - len(over)} of {len(timed)} pages within {args.target:.0f} ms (median)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
