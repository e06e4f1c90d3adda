"""What the sales and purchase order pages share: the entry form (read, validated with the API's
schema, previewed or saved through the service), the order list and the order page with the
buttons for the transitions the order's state and the user's role allow."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from flask import redirect, render_template, request, url_for
from sqlalchemy import func, or_, select

from ..api import schemas as S
from ..domain import permissions
from ..domain.money import COMPANY_CURRENCY, ISO_CURRENCIES
from ..domain.states import StateMachine
from ..errors import ErpError, ValidationFailed
from ..models import Invoice, Partner, Product, Warehouse
from ..services import masterdata, stock
from .framework import PAGE_SIZE, error_message, form_id, int_arg, page, parse_form

DEFAULT_LINES = 6
MAX_FORM_LINES = 100


@dataclass(frozen=True)
class Action:
    """A button on an order page: the state-machine action, who may press it, what it calls."""
    name: str
    label: str
    perm: str
    run: Callable  # (ctx, order_id) -> message
    style: str = ""


@dataclass(frozen=True)
class Kind:
    """Sales or purchasing: the names, the model, the state machine and the actions."""
    key: str            # 'sales' | 'purchases'
    title: str          # 'Sales order'
    partner_role: str   # 'customer' | 'supplier'
    model: type
    machine: StateMachine
    read_perm: str
    write_perm: str
    price_hint: str

    def endpoint(self, what: str) -> str:
        return f"web.{self.key}_{what}"


def allowed_actions(kind: Kind, actions: dict[str, Action], state: str, role: str) -> list[Action]:
    """The buttons to show: the state machine allows the action from this state and the role has its permission."""
    out = []
    for name, action in actions.items():
        sources, _target = kind.machine.actions[name]
        if state in sources and permissions.has(role, action.perm):
            out.append(action)
    return out


# ---- the entry form --------------------------------------------------------------------------

def _choices(s, kind: Kind):
    flag = Partner.is_customer if kind.partner_role == "customer" else Partner.is_supplier
    partners = s.execute(select(Partner.id, Partner.code, Partner.name)
                         .where(flag.is_(True), Partner.active.is_(True)).order_by(Partner.name)).all()
    warehouses = s.execute(select(Warehouse.id, Warehouse.code, Warehouse.name).order_by(Warehouse.code)).all()
    products = s.execute(select(Product.id, Product.sku, Product.name, Product.sale_price, Product.unit)
                         .where(Product.active.is_(True)).order_by(Product.sku)).all()
    return partners, warehouses, products


def blank_form(line_count: int = DEFAULT_LINES) -> dict:
    return {"partner_id": "", "warehouse_id": "", "notes": "", "currency": "", "exchange_rate": "",
            "lines": [{"product_id": "", "quantity": "", "unit_price": "", "discount_percent": ""}
                      for _ in range(line_count)]}


def read_form(form) -> dict:
    """The raw form, as typed (for showing it again)."""
    count = min(max(int_arg("line_count", DEFAULT_LINES, form) or DEFAULT_LINES, 1), MAX_FORM_LINES)
    lines = []
    for i in range(count):
        lines.append({k: form.get(f"lines-{i}-{k}", "").strip()
                      for k in ("product_id", "quantity", "unit_price", "discount_percent")})
    return {"partner_id": form.get("partner_id", "").strip(), "warehouse_id": form.get("warehouse_id", "").strip(),
            "notes": form.get("notes", "").strip(), "currency": form.get("currency", "").strip().upper(),
            "exchange_rate": form.get("exchange_rate", "").strip(), "lines": lines}


def order_input(raw: dict) -> dict:
    """Rows with a product become order lines; validated by the API's OrderIn schema."""
    lines = []
    for i, row in enumerate(raw["lines"]):
        if not any(row.values()):
            continue
        if not row["product_id"]:
            raise ValidationFailed(f"line {i + 1} has figures but no product", field=f"lines.{i}.product_id",
                                   fix="Pick the product, or clear the line.")
        if not row["quantity"]:
            raise ValidationFailed(f"line {i + 1} has no quantity", field=f"lines.{i}.quantity",
                                   fix="Enter the quantity, or clear the line.")
        lines.append({"product_id": form_id(row["product_id"]), "quantity": row["quantity"],
                      "unit_price": row["unit_price"] or None, "discount_percent": row["discount_percent"] or "0"})
    if not raw["partner_id"]:
        raise ValidationFailed("no customer or supplier is chosen", field="partner_id",
                               fix="Pick one from the list.")
    if not raw["warehouse_id"]:
        raise ValidationFailed("no warehouse is chosen", field="warehouse_id", fix="Pick one from the list.")
    if not lines:
        raise ValidationFailed("the order has no lines", field="lines",
                               fix="Pick a product and enter a quantity on at least one line.")
    parsed = parse_form(S.OrderIn, {"partner_id": form_id(raw["partner_id"]),
                                    "warehouse_id": form_id(raw["warehouse_id"]), "notes": raw["notes"],
                                    "currency": raw["currency"] or None,
                                    "exchange_rate": raw["exchange_rate"] or None, "lines": lines})
    return parsed.model_dump()


def render_form(ctx, kind: Kind, raw: dict, error=None, preview=None, status: int = 200):
    partners, warehouses, products = _choices(ctx.s, kind)
    if not raw["warehouse_id"] and len(warehouses) == 1:
        raw["warehouse_id"] = str(warehouses[0].id)
    return render_template("order_form.html", kind=kind, form=raw, partners=partners, warehouses=warehouses,
                           products=products, error=error, preview=preview, company=COMPANY_CURRENCY,
                           currencies=sorted(ISO_CURRENCIES)), status


def preview_order(ctx, create: Callable, data: dict) -> dict:
    """Price the order with the service inside a savepoint that is rolled back: nothing is stored."""
    nested = ctx.s.begin_nested()
    try:
        order = create(ctx.s, data)
        skus = dict(ctx.s.execute(select(Product.id, Product.sku)).all())
        out = {"lines": [{"sku": skus.get(l.product_id, ""), "unit_price": l.unit_price_currency,
                          "net": l.net_amount_currency, "tax": l.tax_amount_currency} for l in order.lines],
               "currency": order.currency, "exchange_rate": order.exchange_rate,
               "net_total_currency": order.net_total_currency, "tax_total_currency": order.tax_total_currency,
               "gross_total_currency": order.gross_total_currency,
               "net_total": order.net_total, "tax_total": order.tax_total, "gross_total": order.gross_total}
    finally:
        nested.rollback()
    return out


def handle_form_post(ctx, kind: Kind, create: Callable):
    """Save (or preview, or add lines to) the order; on an error show the form again with the input."""
    raw = read_form(request.form)
    do = request.form.get("do", "save")
    if do == "more":
        raw["lines"].extend(blank_form(DEFAULT_LINES)["lines"][: MAX_FORM_LINES - len(raw["lines"])])
        return render_form(ctx, kind, raw)
    try:
        data = order_input(raw)
        if do == "preview":
            return render_form(ctx, kind, raw, preview=preview_order(ctx, create, data))
        with ctx.s.begin_nested():
            order = create(ctx.s, data)
    except ErpError as exc:
        return render_form(ctx, kind, raw, error=error_message(exc), status=exc.status)
    ctx.flash(f"{kind.title} {order.number} saved: net {order.net_total:,.2f}, tax {order.tax_total:,.2f}, "
              f"total {order.gross_total:,.2f}.")
    return redirect(url_for(kind.endpoint("order"), order_id=order.id), 303)


# ---- the list and the page -------------------------------------------------------------------

def order_list(ctx, kind: Kind):
    model = kind.model
    state = request.args.get("state", "").strip()
    if state not in kind.machine.states:
        state = ""
    q = request.args.get("q", "").strip()[:100]
    offset = int_arg("offset", 0) or 0
    stmt = select(model, Partner.code, Partner.name).join(Partner, Partner.id == model.partner_id)
    if state:
        stmt = stmt.where(model.state == state)
    if q:
        stmt = stmt.where(or_(model.number.contains(q, autoescape=True), Partner.name.contains(q, autoescape=True),
                              Partner.code.contains(q, autoescape=True)))
    total = ctx.s.scalar(select(func.count()).select_from(stmt.subquery()))
    rows = ctx.s.execute(stmt.order_by(model.id.desc()).limit(PAGE_SIZE).offset(offset)).all()
    return render_template("order_list.html", kind=kind, rows=rows, state=state, q=q, total=total,
                           offset=offset, page_size=PAGE_SIZE)


def order_page(ctx, kind: Kind, order, actions: dict[str, Action]):
    s = ctx.s
    partner = s.get(Partner, order.partner_id)
    warehouse = s.get(Warehouse, order.warehouse_id)
    products = {p.id: p for p in s.scalars(select(Product).where(
        Product.id.in_([l.product_id for l in order.lines])))}
    show_stock = order.state in ("draft", "confirmed") and ctx.may("stock.read")
    on_hand = {l.product_id: stock.on_hand(s, l.product_id, order.warehouse_id) for l in order.lines} \
        if show_stock else {}
    fk = Invoice.sales_order_id if kind.key == "sales" else Invoice.purchase_order_id
    invoice = s.scalar(select(Invoice).where(fk == order.id))
    warehouses = s.execute(select(Warehouse.id, Warehouse.code, Warehouse.name).order_by(Warehouse.code)).all()
    return render_template(
        "order.html", kind=kind, order=order, lines=order.lines, products=products, on_hand=on_hand,
        partner=masterdata.partner_view(partner, ctx.may("partners.sensitive")), warehouse=warehouse,
        warehouses=warehouses, invoice=invoice, company=COMPANY_CURRENCY,
        actions=allowed_actions(kind, actions, order.state, ctx.user.role))


def register_actions(kind: Kind, actions: dict[str, Action]) -> None:
    """One POST route per action: /app/<kind>/<id>/<action>, with the action's own permission."""
    for action in actions.values():
        def act(ctx, order_id, action=action):
            ctx.flash(action.run(ctx, order_id))
            return redirect(url_for(kind.endpoint("order"), order_id=order_id), 303)

        act.__name__ = f"{kind.key}_{action.name}"
        page(f"/app/{kind.key}/<int:order_id>/{action.name}", action.perm,
             f"{action.label.lower()} {kind.title.lower()}s", method="POST", back=kind.endpoint("order"))(act)
