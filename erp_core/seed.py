"""Realistic demo data: master data and a year of trading, created through the services.

    counts = seed(Database(url), scale=1)

Scale 1 is a small shop: 2 warehouses, 20 customers, 5 suppliers, 50 products and about 150
sales orders over the last 365 days; scale N multiplies partners, products and orders by N. Every
document goes through the same service calls a user's request would (never raw SQL): goods are
bought and received before they are sold (sales never oversell), invoices and bills are issued on
their documents' dates and mostly paid, and a stocktake, transfers, customer price lists and
reorder rules (some below their minimum) are added. Every tenth sales order is in US dollars and every
tenth (another) in euros, and every eighth purchase order in euros, each at a fixed rate (FOREIGN).
The result passes erp_core.invariants.

Partners' tax ids, bank accounts and phones are encrypted: configure the field key first
(erp_core.crypto.configure, done by create_app and by erpctl). Seeding is additive: running it
again on a seeded database adds another set with new codes. The work is committed in batches
(one transaction per simulated week) unless single_transaction is set, which makes the whole
seed all-or-nothing.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import heapq
import itertools
import random
from collections import Counter, defaultdict
from decimal import Decimal

from sqlalchemy import event, func, select

from .db import Database
from .domain.money import round_money, to_document
from .models import Invoice, Partner, Product, SalesOrder, Warehouse
from . import seedcopy
from .domain import journal
from .services import billing, ledger, masterdata, purchasing, sales, stock, stocktakes

DAYS = 365
OPENING_CAPITAL = 200_000  # CNY a scale unit, paid in on the first day
TEMPLATE_SCALE = 1  # larger scales copy a year of this scale (see seed)
SALES_ORDERS_PER_SCALE = 150
REPLENISH_EVERY_DAYS = 14
TRANSFER_EVERY_DAYS = 30
REORDER_POINT = Decimal("12")
# Demo exchange rates: company currency units per unit.
FOREIGN = {"USD": Decimal("7.1234"), "EUR": Decimal("7.8012")}

WAREHOUSES = [
    ("WH-MAIN", "Central warehouse", "Industrijska cesta 12, Ljubljana"),
    ("WH-NORTH", "North depot", "Partizanska 40, Maribor"),
    ("WH-COAST", "Coastal depot", "Pristaniska 3, Koper"),
]

_NAME_A = ["Alpine", "Baltic", "Cedar", "Delta", "Emerald", "Falcon", "Granite", "Harbor", "Iris", "Juniper",
           "Kestrel", "Linden", "Meridian", "Nordic", "Oak", "Pioneer", "Quarry", "River", "Summit", "Tidal",
           "Union", "Valley", "Willow", "Zenith"]
_NAME_B = ["Foods", "Hardware", "Textiles", "Logistics", "Builders", "Trading", "Supplies", "Crafts", "Markets",
           "Engineering", "Retail", "Kitchens", "Workshop", "Garden", "Office"]
_FORMS = ["d.o.o.", "Ltd", "GmbH", "S.r.l.", "Inc.", "s.p."]
_CITIES = [("Ljubljana", "1000"), ("Maribor", "2000"), ("Celje", "3000"), ("Kranj", "4000"), ("Koper", "6000"),
           ("Novo mesto", "8000"), ("Zagreb", "10000"), ("Graz", "8010"), ("Trieste", "34121")]
_STREETS = ["Dunajska", "Celovska", "Slovenska", "Trzaska", "Kolodvorska", "Glavni trg", "Presernova", "Mlinska"]

# (SKU prefix, VAT code, unit, price range, items, variants)
_CATALOGUE = [
    ("HW", "VAT13", "pcs", (2, 180),
     ["Hex bolt", "Wood screw", "Wall plug", "Hinge", "Padlock", "Cordless drill", "Measuring tape", "Spirit level",
      "Claw hammer", "Utility knife", "Cable tie", "Work gloves", "Extension cord", "LED work light"],
     ["small", "medium", "large", "pro", "pack of 10", "pack of 50"]),
    ("FD", "VAT9", "pcs", (1, 40),
     ["Olive oil", "Espresso beans", "Basmati rice", "Whole-wheat pasta", "Honey", "Green tea", "Sea salt",
      "Wildflower jam", "Buckwheat flour", "Pumpkin seed oil"],
     ["250 g", "500 g", "1 kg", "5 kg", "0.5 l", "1 l"]),
    ("BK", "VAT6", "pcs", (8, 60),
     ["Warehouse handbook", "Safety manual", "Bookkeeping guide", "Road atlas", "Cookbook", "Sales playbook",
      "Forklift training book", "Inventory workbook"],
     ["1st edition", "2nd edition", "hardcover", "paperback"]),
    ("MD", "VAT0", "pcs", (3, 120),
     ["First aid kit", "Nitrile gloves", "Face masks", "Bandage roll", "Disinfectant", "Thermometer"],
     ["box of 100", "box of 50", "single", "refill", "travel size"]),
]
_CATEGORY_WEIGHTS = [5, 3, 1, 1]  # mostly standard-rated hardware, then food, some books and zero-rated


def seed(db: Database, scale: int, rng_seed: int = 1, *, single_transaction: bool = False,
         today: dt.date | None = None, progress: seedcopy.Progress | None = None,
         template_scale: int = TEMPLATE_SCALE) -> dict:
    """Create demo data of the given scale (>= 1) and return the counts of what was created.

    Above template_scale, a year of that scale is made through the services and copied
    (erp_core.seedcopy) until the scale is reached; single_transaction makes everything through
    the services. progress(phase, done, total) is told of the simulated weeks and the rows copied."""
    if scale < 1:
        raise ValueError("scale must be at least 1")
    base = scale if single_transaction else min(scale, template_scale)
    copies, rest = divmod(scale, base)
    if rest:
        base, copies = scale, 1  # not a multiple: all through the services
    seeder = _Seeder(db, base, random.Random(rng_seed), single_transaction, today or dt.date.today(),
                     warehouses=min(len(WAREHOUSES), 1 + scale), progress=progress)
    before = seedcopy.Mark.take(db)
    counts = seeder.run()
    if copies > 1:
        seedcopy.copy(db, before, seedcopy.Mark.take(db), copies - 1, progress)
        counts = {what: n if what == "warehouses" else n * copies for what, n in counts.items()}
    _analyze(db)
    return counts


def _analyze(db: Database) -> None:
    """Fresh planner statistics after a bulk load (the query plans of the reports depend on them; the
    server's own autovacuum would take them later)."""
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        c.exec_driver_sql("ANALYZE")


def has_sales_orders(db: Database) -> bool:
    """Whether the database has any sales order (demo data is only added to one that has none)."""
    with db.session(write=False) as s:
        return s.scalar(select(SalesOrder.id).limit(1)) is not None


class _Seeder:
    def __init__(self, db: Database, scale: int, rng: random.Random, single: bool, today: dt.date, *,
                 warehouses: int, progress=None):
        self.db, self.scale, self.rng, self.single, self.today = db, scale, rng, single, today
        self.n_warehouses, self.progress = warehouses, progress
        self.start = today - dt.timedelta(days=DAYS)
        self.moment = _when(self.start, random.Random(0))  # the simulated time rows are stamped with
        self.counts: Counter = Counter()
        self._session = None
        self._seq = itertools.count()
        self.events: list = []  # heap of (date, seq, action, args)
        self.avail: dict[tuple[int, int], Decimal] = defaultdict(Decimal)  # (product, warehouse) -> on hand
        self.incoming: dict[tuple[int, int], Decimal] = defaultdict(Decimal)  # ordered, not yet received

    # ---- transactions ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def tx(self):
        if self._session is not None:
            yield self._session
            return
        with self.db.session(actor="seed") as s:
            event.listen(s, "before_flush", self._stamp)
            yield s

    def _stamp(self, session, _context, _instances) -> None:
        """Moves, lots, entries and stocktakes are stamped with the simulated day, not the wall clock."""
        for obj in session.new:
            for attr in ("created_at", "received_at"):
                if getattr(obj, attr, False) is None:
                    setattr(obj, attr, self.moment)

    def run(self) -> dict:
        if self.single:
            with self.db.session(actor="seed") as s:
                event.listen(s, "before_flush", self._stamp)
                self._session = s
                try:
                    self._run()
                finally:
                    self._session = None
        else:
            self._run()
        return dict(self.counts)

    def _run(self) -> None:
        with self.tx() as s:
            self._master_data(s)
        days = [self.start + dt.timedelta(days=i) for i in range(DAYS + 1)]
        for week in range(0, len(days), 7):
            with self.tx() as s:
                for day in days[week:week + 7]:
                    self._day(s, day)
            if self.progress:
                self.progress("year", min(week + 7, len(days)), len(days))
        with self.tx() as s:
            self._reorder_rules(s)

    # ---- master data ----------------------------------------------------------------------------

    def _opening_capital(self, s) -> None:
        """The owners' paid-in capital in the bank on the first day, so the demo books start as a real
        company's do (without it the bank runs negative buying the first stock)."""
        amount = str(OPENING_CAPITAL * self.scale)
        ledger.manual_entry(s, "Opening balance: paid-in capital", [
            {"account": journal.CASH, "debit": amount}, {"account": journal.EQUITY, "credit": amount}],
            date=self.start)

    def _master_data(self, s) -> None:
        rng, scale = self.rng, self.scale
        self._opening_capital(s)
        self.warehouses = []
        for code, name, address in WAREHOUSES[:self.n_warehouses]:
            wh = s.scalar(select(Warehouse).where(Warehouse.code == code))
            if wh is None:
                wh = masterdata.create_warehouse(s, {"code": code, "name": name, "address": address})
                self.counts["warehouses"] += 1
            self.warehouses.append(wh.id)
        self.main = self.warehouses[0]
        self.depots = self.warehouses[1:]

        first_partner = (s.scalar(select(func.count()).select_from(Partner)) or 0) + 1
        numbers = itertools.count(first_partner)
        used_names: set[str] = set(s.scalars(select(Partner.name)))
        self.customers, self.suppliers, self.terms = [], [], {}
        for kind, n in (("customer", 20 * scale), ("supplier", 5 * scale)):
            for _ in range(n):
                p = masterdata.create_partner(s, self._partner_data(kind, next(numbers), used_names), initial_bank_account=True)
                (self.customers if kind == "customer" else self.suppliers).append(p.id)
                self.terms[p.id] = p.payment_terms_days
                self.counts[f"{kind}s"] += 1

        first_product = (s.scalar(select(func.count()).select_from(Product)) or 0) + 1
        self.products: list[dict] = []
        used = set(s.scalars(select(Product.name)))
        for i in range(50 * scale):
            prefix, vat, unit, (lo, hi), items, variants = rng.choices(_CATALOGUE, _CATEGORY_WEIGHTS)[0]
            for _ in range(20):
                name = f"{rng.choice(items)}, {rng.choice(variants)}"
                if name not in used:
                    break
            else:
                name = f"{name} #{first_product + i}"
            used.add(name)
            price = Decimal(str(round(rng.uniform(lo, hi), 0))) - Decimal("0.10")
            price = max(price, Decimal("0.90"))
            p = masterdata.create_product(s, {"sku": f"{prefix}-{first_product + i:05d}", "name": name,
                                              "unit": unit, "sale_price": price, "tax_code": vat})
            self.products.append({
                "id": p.id, "price": price,
                "cost": round_money(price * Decimal(str(round(rng.uniform(0.5, 0.72), 2)))),
                "supplier": self.suppliers[i % len(self.suppliers)],
                "weekly": rng.choice([1, 1, 2, 2, 3, 4, 6]) * rng.choice([1, 1, 1, 2]),
            })
            self.counts["products"] += 1
        self.by_id = {p["id"]: p for p in self.products}

        # A few customers buy on their own price list, one with a quantity break.
        for customer in rng.sample(self.customers, min(len(self.customers), 2 + scale)):
            for p in rng.sample(self.products, min(len(self.products), rng.randint(4, 8))):
                off = Decimal(rng.choice(["0.95", "0.90", "0.85"]))
                masterdata.set_customer_price(s, customer, p["id"], round_money(p["price"] * off))
                if rng.random() < 0.25:
                    masterdata.set_customer_price(s, customer, p["id"], round_money(p["price"] * off * Decimal("0.9")),
                                                  min_quantity=10)
            self.counts["price_lists"] += 1

    def _partner_data(self, kind: str, number: int, used: set[str]) -> dict:
        rng = self.rng
        for _ in range(50):
            name = f"{rng.choice(_NAME_A)} {rng.choice(_NAME_B)} {rng.choice(_FORMS)}"
            if name not in used:
                break
        else:
            name = f"{name} ({number})"
        used.add(name)
        city, postcode = rng.choice(_CITIES)
        slug = name.split()[0].lower() + name.split()[1].lower()
        return {
            "code": f"{'C' if kind == 'customer' else 'S'}{number:05d}",
            "name": name,
            "is_customer": kind == "customer",
            "is_supplier": kind == "supplier",
            "email": f"{'orders' if kind == 'customer' else 'sales'}@{slug}.example",
            "address": f"{rng.choice(_STREETS)} {rng.randint(1, 120)}, {postcode} {city}",
            "tax_id": f"SI{rng.randint(10_000_000, 99_999_999)}",
            "bank_account": "SI56 " + " ".join(f"{rng.randint(0, 9999):04d}" for _ in range(3)) + f" {rng.randint(0, 999):03d}",
            "phone": f"+386 {rng.randint(1, 7)} {rng.randint(100, 999)} {rng.randint(10, 99)} {rng.randint(10, 99)}",
            "payment_terms_days": rng.choice([15, 30, 30, 30, 45, 60]) if kind == "customer" else rng.choice([30, 45, 60]),
        }

    # ---- the simulated year ---------------------------------------------------------------------

    def _at(self, day: dt.date, action: str, *args) -> None:
        """Schedule an action; anything due after today is left undone (open, in transit)."""
        if day <= self.today:
            heapq.heappush(self.events, (day, next(self._seq), action, args))

    def _day(self, s, day: dt.date) -> None:
        offset = (day - self.start).days
        self.moment = dt.datetime.combine(day, dt.time(9), tzinfo=dt.timezone.utc)
        if offset == 0:
            self._initial_stock(s, day)
        elif offset % REPLENISH_EVERY_DAYS == 0:
            self._replenish(s, day)
        while self.events and self.events[0][0] <= day:
            _, _, action, args = heapq.heappop(self.events)
            getattr(self, action)(s, day, *args)
        if offset >= 7:  # the shop opens a week after the first goods were ordered
            expected = SALES_ORDERS_PER_SCALE * self.scale / (DAYS - 7)
            for _ in range(self._poisson(expected)):
                self._sale(s, day)
        if offset and offset % TRANSFER_EVERY_DAYS == 0:
            self._transfers(s, day)
        if self.today - day == dt.timedelta(days=20):
            self._stocktake(s, day)

    def _poisson(self, mean: float) -> int:
        n, p, limit = 0, 1.0, pow(2.718281828459045, -mean)
        while True:
            p *= self.rng.random()
            if p <= limit:
                return n
            n += 1

    # ---- buying ---------------------------------------------------------------------------------

    def _initial_stock(self, s, day: dt.date) -> None:
        by_supplier = defaultdict(list)
        for p in self.products:
            by_supplier[p["supplier"]].append((p, p["weekly"] * 10))
        for supplier, lines in by_supplier.items():
            self._purchase(s, day, supplier, self.main, lines, lead=2)

    def _replenish(self, s, day: dt.date) -> None:
        by_supplier = defaultdict(list)
        for p in self.products:
            key = (p["id"], self.main)
            if self.avail[key] + self.incoming[key] < max(REORDER_POINT, p["weekly"] * 4):
                by_supplier[p["supplier"]].append((p, p["weekly"] * 8 + self.rng.randint(0, 10)))
        for supplier, lines in by_supplier.items():
            self._purchase(s, day, supplier, self.main, lines, lead=self.rng.randint(3, 8))

    def _purchase(self, s, day: dt.date, supplier: int, warehouse: int, lines, lead: int) -> None:
        fx = {}
        if self.counts["purchase_orders"] % 8 == 5:  # some suppliers bill in euros
            fx = {"currency": "EUR", "exchange_rate": FOREIGN["EUR"]}
        rate = fx.get("exchange_rate", Decimal("1"))
        order = purchasing.create(s, {"partner_id": supplier, "warehouse_id": warehouse, "notes": "", **fx, "lines": [
            {"product_id": p["id"], "quantity": Decimal(qty), "unit_price": to_document(p["cost"], rate)}
            for p, qty in lines]})
        order.order_date = _when(day, self.rng)
        purchasing.confirm(s, order.id)
        self.counts["purchase_orders"] += 1
        for p, qty in lines:
            self.incoming[(p["id"], warehouse)] += Decimal(qty)
        self._at(day + dt.timedelta(days=lead), "_receive", order.id, warehouse,
                 [(p["id"], Decimal(qty)) for p, qty in lines])

    def _receive(self, s, day: dt.date, order_id: int, warehouse: int, lines) -> None:
        purchasing.receive(s, order_id, date=day)
        for product, qty in lines:
            self.avail[(product, warehouse)] += qty
            self.incoming[(product, warehouse)] -= qty
        self._at(day + dt.timedelta(days=self.rng.randint(1, 5)), "_bill", order_id)

    def _bill(self, s, day: dt.date, order_id: int) -> None:
        order = purchasing.get(s, order_id)
        bill = purchasing.bill(s, order_id, supplier_reference=f"R-{self.rng.randint(10000, 99999)}", date=day)
        self.counts["bills"] += 1
        terms = self.terms[order.partner_id]
        if self.rng.random() < 0.92:  # most bills are paid around their due date
            self._at(day + dt.timedelta(days=max(1, terms + self.rng.randint(-10, 5))), "_pay", bill.id, None)

    # ---- selling --------------------------------------------------------------------------------

    def _sale(self, s, day: dt.date) -> None:
        rng = self.rng
        warehouse = self.main if not self.depots or rng.random() < 0.75 else rng.choice(self.depots)
        lines = []
        for p in rng.sample(self.products, min(len(self.products), rng.choice([1, 1, 2, 2, 3, 4]))):
            key = (p["id"], warehouse)
            qty = min(Decimal(rng.randint(1, max(1, p["weekly"] * 2))), self.avail[key])
            if qty <= 0:
                continue
            line = {"product_id": p["id"], "quantity": qty}
            if rng.random() < 0.15:
                line["discount_percent"] = Decimal(rng.choice([5, 10]))
            lines.append(line)
        if not lines:
            return
        customer = rng.choice(self.customers)
        fx = {}
        currency = {3: "USD", 7: "EUR"}.get(self.counts["sales_orders"] % 10)
        if currency:  # export customers pay in their currency
            fx = {"currency": currency, "exchange_rate": FOREIGN[currency]}
        order = sales.create(s, {"partner_id": customer, "warehouse_id": warehouse, "lines": lines, **fx,
                                 "channel": rng.choice(["direct", "direct", "phone", "web"])})
        order.order_date = _when(day, rng)
        self.counts["sales_orders"] += 1
        age = (self.today - day).days
        fate = rng.random()
        if fate < 0.015:  # the customer changed their mind
            sales.confirm(s, order.id)
            sales.cancel(s, order.id)
            return
        if age <= 10 and fate < 0.2:  # recent orders are still being worked on
            return
        sales.confirm(s, order.id)
        if age <= 10 and fate < 0.4:
            return
        sales.deliver(s, order.id, date=day)
        for line in lines:
            self.avail[(line["product_id"], warehouse)] -= line["quantity"]
        if age <= 10 and fate < 0.55:
            return
        self._at(day + dt.timedelta(days=rng.choice([0, 0, 1, 2])), "_invoice", order.id, customer)

    def _invoice(self, s, day: dt.date, order_id: int, customer: int) -> None:
        inv = sales.invoice(s, order_id, date=day)
        self.counts["invoices"] += 1
        terms, fate = self.terms[customer], self.rng.random()
        if fate < 0.75:  # on time
            self._at(day + dt.timedelta(days=self.rng.randint(3, terms + 5)), "_pay", inv.id, None)
        elif fate < 0.87:  # half now, the rest later (or never)
            half = round_money(inv.gross_total_currency / 2)
            if half > 0:
                self._at(day + dt.timedelta(days=self.rng.randint(5, terms)), "_pay", inv.id, half)
                if self.rng.random() < 0.5:
                    self._at(day + dt.timedelta(days=terms + self.rng.randint(10, 60)), "_pay", inv.id, None)
        elif fate < 0.96:  # late payers
            self._at(day + dt.timedelta(days=terms + self.rng.randint(20, 100)), "_pay", inv.id, None)
        # else: never paid (shows in the aging report)

    def _pay(self, s, day: dt.date, invoice_id: int, amount) -> None:
        inv = s.get(Invoice, invoice_id)
        outstanding = billing.outstanding(s, inv)  # in the invoice's currency
        amount = outstanding if amount is None else min(amount, outstanding)
        if amount <= 0:
            return
        billing.register_payment(s, invoice_id, amount, paid_on=day,
                                 method="bank" if self.rng.random() < 0.9 else "card")
        self.counts["payments"] += 1

    # ---- stock keeping --------------------------------------------------------------------------

    def _transfers(self, s, day: dt.date) -> None:
        """Top the depots up from the central warehouse."""
        for depot in self.depots:
            for p in self.products:
                target = Decimal(p["weekly"] * 3)
                have, spare = self.avail[(p["id"], depot)], self.avail[(p["id"], self.main)] - REORDER_POINT
                qty = min(target - have, spare)
                if have < target / 2 and qty >= 1:
                    qty = qty.to_integral_value()
                    stock.transfer(s, p["id"], qty, self.main, depot, reference=f"TR-{day:%Y%m%d}-{depot}")
                    self.avail[(p["id"], self.main)] -= qty
                    self.avail[(p["id"], depot)] += qty
                    self.counts["transfers"] += 1

    def _stocktake(self, s, day: dt.date) -> None:
        """Count a depot (or the main warehouse) and post the small differences found."""
        warehouse = self.depots[0] if self.depots else self.main
        stocked = [p["id"] for p in self.products if self.avail[(p["id"], warehouse)] > 0]
        if not stocked:
            return
        counts = []
        for product in self.rng.sample(stocked, min(len(stocked), 10)):
            have = self.avail[(product, warehouse)]
            counted = max(Decimal(0), have + self.rng.choice([-2, -1, 0, 0, 0, 1]))
            counts.append({"product_id": product, "counted_quantity": counted})
            self.avail[(product, warehouse)] = counted
        st = stocktakes.create(s, warehouse, counts)
        stocktakes.post(s, st.id, date=day)
        self.counts["stocktakes"] += 1

    def _reorder_rules(self, s) -> None:
        """A reorder point for every product in the central warehouse; make sure a few are below."""
        below = 0
        for p in self.products:
            minimum = max(REORDER_POINT, Decimal(p["weekly"] * 4))
            if self.avail[(p["id"], self.main)] < minimum:
                below += 1
            stock.set_reorder_rule(s, p["id"], self.main, minimum, Decimal(p["weekly"] * 8))
            self.counts["reorder_rules"] += 1
        if below < 3:
            lowest = sorted(self.products, key=lambda p: self.avail[(p["id"], self.main)])[:3 - below]
            for p in lowest:
                minimum = self.avail[(p["id"], self.main)] + 5
                stock.set_reorder_rule(s, p["id"], self.main, minimum, Decimal(p["weekly"] * 8))
        for depot in self.depots:
            for p in self.rng.sample(self.products, min(len(self.products), 5 * self.scale)):
                stock.set_reorder_rule(s, p["id"], depot, Decimal(p["weekly"] * 2), Decimal(p["weekly"] * 3))
                self.counts["reorder_rules"] += 1


def _when(day: dt.date, rng: random.Random) -> dt.datetime:
    """A moment during the working hours of `day`, in UTC."""
    return dt.datetime.combine(day, dt.time(rng.randint(7, 16), rng.randint(0, 59)), tzinfo=dt.timezone.utc)
