"""The drill's synthetic business workload: sales orders created, confirmed, delivered, invoiced and
paid through the sandbox ERP's REST API, on a thread, for the whole drill. Every write the API
acknowledged is a line of workload.jsonl (kind, id, action, time); so is every failure. After the
recovery the acknowledged writes are looked up again: those missing are the RPO.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

# Each acknowledged write of an order, and the order state at or after which it has survived.
ACTIONS = ("create", "confirm", "deliver", "invoice", "pay")
RANK = {"draft": 0, "confirmed": 1, "delivered": 2, "invoiced": 3, "paid": 4}
TIMEOUT = 5.0
PAUSE = 0.05


@dataclass
class Write:
    t: float
    order: int
    action: str
    invoice: int | None = None


@dataclass
class Workload:
    erp_url: str
    login: dict
    log_path: Path
    writes: list[Write] = field(default_factory=list)
    failures: list[tuple[float, str]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _token: str | None = None
    _master: dict = field(default_factory=dict)

    # -------------------------------------------------------------------------------- the API

    def _call(self, s: requests.Session, method: str, path: str, body=None, expect: int = 200) -> dict:
        if self._token is None:
            r = s.post(self.erp_url + "/api/v1/auth/login", json=self.login, timeout=TIMEOUT)
            if r.status_code != 200:
                raise RuntimeError(f"login: HTTP {r.status_code}")
            self._token = r.json()["token"]
        r = s.request(method, self.erp_url + "/api/v1" + path, json=body, timeout=TIMEOUT,
                      headers={"Authorization": f"Bearer {self._token}"})
        if r.status_code == 401:
            self._token = None  # tokens issued since a restored backup are gone: log in again
        if r.status_code != expect:
            raise RuntimeError(f"{method} {path}: HTTP {r.status_code} {r.text[:200]}")
        return r.json()

    def set_up(self) -> None:
        """A warehouse, a customer (a tax id and a phone: encrypted fields) and a product with stock enough
        for the whole drill."""
        tag = f"{int(time.time() * 1000) % 10**9:09d}"
        with requests.Session() as s:
            wh = self._call(s, "POST", "/warehouses", {"code": f"DW{tag}", "name": f"Drill {tag}"}, 201)["id"]
            cust = self._call(s, "POST", "/partners", {"code": f"DC{tag}", "name": f"Drill customer {tag}",
                                                       "is_customer": True, "tax_id": f"9131{tag}X",
                                                       "phone": f"138{tag[:8]}"}, 201)["id"]
            supp = self._call(s, "POST", "/partners", {"code": f"DS{tag}", "name": f"Drill supplier {tag}",
                                                       "is_supplier": True}, 201)["id"]
            prod = self._call(s, "POST", "/products", {"sku": f"DP{tag}", "name": f"Drill product {tag}",
                                                       "sale_price": "12.50", "tax_code": "VAT13"}, 201)["id"]
            po = self._call(s, "POST", "/purchase-orders", {"partner_id": supp, "warehouse_id": wh, "lines": [
                {"product_id": prod, "quantity": "1000000", "unit_price": "4.00"}]}, 201)
            self._call(s, "POST", f"/purchase-orders/{po['id']}/confirm")
            self._call(s, "POST", f"/purchase-orders/{po['id']}/receive")
        self._master = {"warehouse": wh, "customer": cust, "product": prod}

    def transaction(self, s: requests.Session, log) -> None:
        """One sale from order to payment; each acknowledged write logged as it is acknowledged."""
        m = self._master
        order = self._call(s, "POST", "/sales-orders", {"partner_id": m["customer"], "warehouse_id": m["warehouse"],
                                                        "lines": [{"product_id": m["product"], "quantity": "1"}]}, 201)
        self._ack(log, Write(time.time(), order["id"], "create"))
        self._call(s, "POST", f"/sales-orders/{order['id']}/confirm")
        self._ack(log, Write(time.time(), order["id"], "confirm"))
        self._call(s, "POST", f"/sales-orders/{order['id']}/deliver", {})
        self._ack(log, Write(time.time(), order["id"], "deliver"))
        inv = self._call(s, "POST", f"/sales-orders/{order['id']}/invoice", None, 201)
        self._ack(log, Write(time.time(), order["id"], "invoice", inv["id"]))
        self._call(s, "POST", f"/invoices/{inv['id']}/payments", {"amount": str(inv["gross_total"])}, 201)
        self._ack(log, Write(time.time(), order["id"], "pay", inv["id"]))

    def _ack(self, log, w: Write) -> None:
        self.writes.append(w)
        log.write(json.dumps({"t": w.t, "ack": True, "kind": "sales_order", "id": w.order, "action": w.action,
                              "invoice": w.invoice}) + "\n")
        log.flush()

    # ---------------------------------------------------------------------------- the thread

    def _loop(self) -> None:
        with open(self.log_path, "a") as log, requests.Session() as s:
            while not self._stop.is_set():
                try:
                    self.transaction(s, log)
                except (requests.RequestException, RuntimeError, ValueError, KeyError) as exc:
                    t = time.time()
                    self.failures.append((t, str(exc)[:200]))
                    log.write(json.dumps({"t": t, "ack": False, "error": str(exc)[:300]}) + "\n")
                    log.flush()
                    s.close()
                    self._stop.wait(0.2)
                self._stop.wait(PAUSE)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="drill-workload", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=TIMEOUT * 2 + 1)

    def first_ack_after(self, t: float) -> float | None:
        return next((w.t for w in list(self.writes) if w.t >= t), None)

    def wait_ack_after(self, t: float, timeout: float) -> float | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.first_ack_after(t)
            if found is not None:
                return found
            time.sleep(0.1)
        return None

    # ------------------------------------------------------------------------------------ RPO

    def missing(self) -> tuple[list[Write], list[Write]]:
        """(survived, lost) of the acknowledged writes, looked up through the API."""
        survived, lost = [], []
        by_order: dict[int, list[Write]] = {}
        for w in list(self.writes):
            by_order.setdefault(w.order, []).append(w)
        with requests.Session() as s:
            for order_id, ws in by_order.items():
                state, paid = self._state(s, order_id, ws)
                for w in ws:
                    ok = paid if w.action == "pay" else state >= ACTIONS.index(w.action)
                    (survived if ok else lost).append(w)
        return survived, lost

    def _state(self, s: requests.Session, order_id: int, ws: list[Write]) -> tuple[int, bool]:
        try:
            order = self._call(s, "GET", f"/sales-orders/{order_id}")
        except RuntimeError:
            return -1, False
        invoice = next((w.invoice for w in ws if w.invoice), None)
        paid = False
        if invoice and any(w.action == "pay" for w in ws):
            try:
                paid = float(self._call(s, "GET", f"/invoices/{invoice}").get("amount_paid") or 0) > 0
            except RuntimeError:
                paid = False
        return RANK.get(order.get("state"), -1), paid
