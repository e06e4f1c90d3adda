"""The new-order page at a given demo scale: its size and the time the server takes to answer it,
and (when the code has it) the product search that replaced the embedded product list.

    python bench/order_form.py --scale 20 [--db PATH] [--repeat 7]
    python bench/order_form.py --scale 1 --products 100000 --db /tmp/erp-100k.sqlite3   # the picker at 100 k

Seeds a SQLite database once (`--db` keeps it for the next run, so the code before and after a change is
measured on the same data), serves the ERP with waitress on loopback and, as the `sales` user logged in
through the form, GETs /app/sales/new `--repeat` times (after one warm-up): prints the body size and the
median, min and max wall time of the requests. `--products N` first tops the products up to N rows
(plain INSERTs, names from a small vocabulary) and times the picker's searches: a word many names hold,
an exact code, and a text no row holds (the whole table is looked through). Prints figures, asserts nothing."""

from __future__ import annotations

import argparse
import os
import re
import statistics
import tempfile
import time
from pathlib import Path

import requests

from erp_core import crypto
from erp_core.app import create_app
from erp_core.config import Settings
from erp_core.db import Database, migrate
from erp_core.domain import search
from erp_core.models import Product
from erp_core.seed import seed
from erp_core.serve import Server
from erp_core.services import auth

KEY = "bench-order-form-field-key-0123456789"
PASSWORD = "bench-password-1234"


def prepare(path: Path, scale: int) -> str:
    url = f"sqlite:///{path}"
    crypto.configure(KEY)
    if not path.exists():
        migrate(url)
        db = Database(url)
        seed(db, scale=scale)
        with db.session() as s:
            auth.add_user(s, "benchsales", PASSWORD, "sales", full_name="Bench sales")
        db.dispose()
    return url


WORDS = ["green", "black", "oolong", "jasmine", "tea", "cup", "pot", "bowl", "tray", "kettle", "celadon", "porcelain", "bamboo", "box", "gift"]


def top_up_products(url: str, count: int) -> None:
    db = Database(url)
    with db.session() as s:
        have = s.query(Product).count()
        rows = []
        for i in range(have, count):
            name = " ".join(WORDS[(i * k) % len(WORDS)] for k in (1, 3, 7)) + f" {i}"
            sku = f"BULK-{i:06d}"
            rows.append({"sku": sku, "name": name, "unit": "pcs", "sale_price": 10, "tax_code": "VAT13",
                         "avg_cost": 0, "costing": "moving_average", "active": True,
                         "search_text": search.key(sku, name)})
        for start in range(0, len(rows), 5000):
            s.execute(Product.__table__.insert(), rows[start:start + 5000])
    db.dispose()


def timed(session: requests.Session, url: str, repeat: int) -> tuple[int, list[float]]:
    session.get(url).raise_for_status()  # warm-up
    times, size = [], 0
    for _ in range(repeat):
        start = time.perf_counter()
        r = session.get(url)
        times.append(time.perf_counter() - start)
        r.raise_for_status()
        size = len(r.content)
    return size, times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=int, default=20)
    ap.add_argument("--db", type=Path, default=None)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--products", type=int, default=0, help="top the products up to this many rows first")
    args = ap.parse_args()
    path = args.db or Path(tempfile.mkdtemp()) / f"erp-scale{args.scale}.sqlite3"
    url = prepare(path, args.scale)
    if args.products:
        top_up_products(url, args.products)
    app = create_app(Settings(url, field_key=KEY), Database(url))
    server = Server(app, port=0).start()
    try:
        http = requests.Session()
        first = http.get(server.url + "/app/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', first.text).group(1)
        # the session cookie is Secure: requests would not send it back over plain loopback HTTP
        http.headers["Cookie"] = f"erp_session={first.cookies['erp_session']}"
        r = http.post(server.url + "/app/login", data={"username": "benchsales", "password": PASSWORD,
                                                      "csrf_token": token}, allow_redirects=False)
        assert r.status_code == 303, r.text[:300]
        http.headers["Cookie"] = f"erp_session={r.cookies['erp_session']}"
        rows = [("GET /app/sales/new", server.url + "/app/sales/new")]
        probe = http.get(server.url + "/app/search/products?q=a")
        if probe.status_code == 200 and probe.headers.get("Content-Type", "").startswith("application/json"):
            for q in ("tea", "bulk-000777" if args.products > 777 else "TEA", "no-such-text"):
                rows.append((f"GET /app/search/products?q={q}", server.url + f"/app/search/products?q={q}"))
        with Database(url).session(write=False) as s:
            products = s.query(Product).count()
        print(f"scale {args.scale}, {products:,} products, database {path}, load average {os.getloadavg()[0]:.2f}")
        for name, target in rows:
            size, times = timed(http, target, args.repeat)
            print(f"{name}: {size:,} bytes; median {statistics.median(times) * 1000:.0f} ms "
                  f"(min {min(times) * 1000:.0f}, max {max(times) * 1000:.0f}, n={len(times)})")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
