"""What the sales and purchase order pages share: the entry form (read, validated with the API's
schema, previewed or saved through the service), the order list and the order page with the
buttons for the transitions the order's state and the user's role allow."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from flask import redirect, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy import func, or_, select

from ..api import schemas as S
from ..domain import permissions, pricing
from ..domain.money import COMPANY_CURRENCY, ISO_CURRENCIES
from ..domain.states import StateMachine
from ..errors import ErpError, ValidationFailed
from ..models import CreditNote, Invoice, Partner, Product, Return, Warehouse
from ..services import masterdata, stock
from .framework import PAGE_SIZE, error_message, form_id, int_arg, page, parse_form
from .listing import all_rows, csv_response, page_of
from .listing import in_range as listing_in_range
from .listing import read as listing_of
from .terms import term
from .i18n import money, pct

DEFAULT_LINES = 6
MAX_FORM_LINES = 100


@dataclass(frozen=True)
class Action:
    """A button on an order page: the state-machine action, who may press it, what it calls."""
    name: str
    label: Any
    perm: str
    run: Callable  # (ctx, order_id) -> message
    style: str = ""


@dataclass(frozen=True)
class Kind:
    """Sales or purchasing: the names, the model, the state machine and the actions. The words
    shown are lazy translations (whole phrases: the languages do not build them alike)."""
    key: str            # 'sales' | 'purchases'
    partner_role: str   # 'customer' | 'supplier'
    model: type
    machine: StateMachine
    read_perm: str
    write_perm: str
    words: dict         # title, titles, new, partner, partner_placeholder, unknown_partner (%(code)s),
    #                     pick_partner_first, search_hint, price_hint, none_match, all_link, change,
    #                     saved (with %(number)s %(net)s %(tax)s %(total)s)

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

def _warehouses(s):
    return s.execute(select(Warehouse.id, Warehouse.code, Warehouse.name).order_by(Warehouse.code)).all()


def _code_of(text: str) -> str:
    """'TEA-1 — Longjing tea' (a picked suggestion) or 'tea-1' (typed) -> the code."""
    return text.split(" — ")[0].strip()


def resolve_codes(s, kind: Kind, raw: dict) -> None:
    """The text fields of the pickers to ids: a code typed (any case), or a suggestion picked, names the
    active partner or product; a field left empty keeps the id sent beside it (forms and tests that send ids)."""
    if raw["partner"]:
        partner = masterdata.by_code(s, Partner, _code_of(raw["partner"]), kind.partner_role)
        if partner is None:
            raise ValidationFailed(str(kind.words["unknown_partner"]) % {"code": _code_of(raw["partner"])},
                                   field="partner_id", fix=_("Type the code, or type part of the name and pick "
                                                             "from the suggestions."))
        raw["partner_id"] = str(partner.id)
    for i, row in enumerate(raw["lines"]):
        if row["product"]:
            product = masterdata.by_code(s, Product, _code_of(row["product"]))
            if product is None:
                raise ValidationFailed(_("line %(n)s: no active product has the code %(code)s", n=i + 1,
                                         code=_code_of(row["product"])), field=f"lines.{i}.product_id",
                                       fix=_("Type the SKU, or type part of the name and pick from the suggestions."))
            row["product_id"] = str(product.id)


def _label_ids(s, raw: dict) -> None:
    """Fill the pickers' text fields for the ids a form holds without text (a stored order, an id sent)."""
    pid = form_id(raw["partner_id"])
    if not raw["partner"] and isinstance(pid, int):
        partner = s.get(Partner, pid)
        raw["partner"] = f"{partner.code} — {partner.name}" if partner else ""
    wanted = {form_id(r["product_id"]) for r in raw["lines"] if r["product_id"] and not r["product"]}
    wanted = {i for i in wanted if isinstance(i, int)}
    if wanted:
        labels = {str(i): f"{sku} — {name}" for i, sku, name in
                  s.execute(select(Product.id, Product.sku, Product.name).where(Product.id.in_(wanted)))}
        for row in raw["lines"]:
            if row["product_id"] and not row["product"]:
                row["product"] = labels.get(row["product_id"], "")


def order_as_form(order, extra_lines: int = 2) -> dict:
    """A stored order as the entry form shows it (its prices and discounts as stored), with blank lines to add."""
    def plain(d):
        text = format(d, "f")
        return text.rstrip("0").rstrip(".") if "." in text else text
    lines = [{"product_id": str(l.product_id), "product": "", "quantity": plain(l.quantity),
              "unit_price": str(l.unit_price_currency),
              "discount_percent": plain(l.discount_percent) if l.discount_percent else ""} for l in order.lines]
    lines += blank_form(extra_lines)["lines"]
    return {"partner_id": str(order.partner_id), "partner": "", "warehouse_id": str(order.warehouse_id),
            "notes": order.notes or "",
            "currency": "" if order.currency == COMPANY_CURRENCY else order.currency,
            "exchange_rate": "" if order.currency == COMPANY_CURRENCY else str(order.exchange_rate), "lines": lines}


def blank_form(line_count: int = DEFAULT_LINES) -> dict:
    return {"partner_id": "", "partner": "", "warehouse_id": "", "notes": "", "currency": "", "exchange_rate": "",
            "lines": [{"product_id": "", "product": "", "quantity": "", "unit_price": "", "discount_percent": ""}
                      for _ in range(line_count)]}


def read_form(form) -> dict:
    """The raw form, as typed (for showing it again)."""
    count = min(max(int_arg("line_count", DEFAULT_LINES, form) or DEFAULT_LINES, 1), MAX_FORM_LINES)
    lines = []
    for i in range(count):
        lines.append({k: form.get(f"lines-{i}-{k}", "").strip()
                      for k in ("product_id", "product", "quantity", "unit_price", "discount_percent")})
    return {"partner_id": form.get("partner_id", "").strip(), "partner": form.get("partner", "").strip()[:300],
            "warehouse_id": form.get("warehouse_id", "").strip(),
            "notes": form.get("notes", "").strip(), "currency": form.get("currency", "").strip().upper(),
            "exchange_rate": form.get("exchange_rate", "").strip(), "lines": lines}


def order_input(raw: dict) -> dict:
    """Rows with a product become order lines; validated by the API's OrderIn schema."""
    lines = []
    for i, row in enumerate(raw["lines"]):
        if not any(row.values()):
            continue
        if not row["product_id"]:
            raise ValidationFailed(_("line %(n)s has figures but no product", n=i + 1), field=f"lines.{i}.product_id",
                                   fix=_("Pick the product, or clear the line."))
        if not row["quantity"]:
            raise ValidationFailed(_("line %(n)s has no quantity", n=i + 1), field=f"lines.{i}.quantity",
                                   fix=_("Enter the quantity, or clear the line."))
        lines.append({"product_id": form_id(row["product_id"]), "quantity": row["quantity"],
                      "unit_price": row["unit_price"] or None, "discount_percent": row["discount_percent"] or "0"})
    if not raw["partner_id"]:
        raise ValidationFailed(_("no customer or supplier is chosen"), field="partner_id",
                               fix=_("Pick one from the list."))
    if not raw["warehouse_id"]:
        raise ValidationFailed(_("no warehouse is chosen"), field="warehouse_id", fix=_("Pick one from the list."))
    if not lines:
        raise ValidationFailed(_("the order has no lines"), field="lines",
                               fix=_("Pick a product and enter a quantity on at least one line."))
    parsed = parse_form(S.OrderIn, {"partner_id": form_id(raw["partner_id"]),
                                    "warehouse_id": form_id(raw["warehouse_id"]), "notes": raw["notes"],
                                    "currency": raw["currency"] or None,
                                    "exchange_rate": raw["exchange_rate"] or None, "lines": lines})
    return parsed.model_dump()


def render_form(ctx, kind: Kind, raw: dict, error=None, preview=None, status: int = 200, editing=None):
    """The entry form. Partners and products are not listed in it: their fields are pickers that search
    as the user types (picker_pages), or take a code typed as it is (resolve_codes)."""
    warehouses = _warehouses(ctx.s)
    if not raw["warehouse_id"] and len(warehouses) == 1:
        raw["warehouse_id"] = str(warehouses[0].id)
    _label_ids(ctx.s, raw)
    return render_template("order_form.html", kind=kind, form=raw, warehouses=warehouses, error=error,
                           preview=preview, company=COMPANY_CURRENCY, editing=editing,
                           currencies=sorted(ISO_CURRENCIES)), status


def live_totals(ctx, kind: Kind, price_preview: Callable):
    """JSON for the form's live totals: the complete lines (a product and a quantity) priced by the service's
    own rule (price_preview: the customer's price list, the discount, tax), nothing stored. The warehouse
    does not change a price: one not yet chosen is stood in for by any id."""
    raw = read_form(request.args)
    rows = [i for i, r in enumerate(raw["lines"]) if (r["product_id"] or r["product"]) and r["quantity"]]
    if not rows or not (raw["partner_id"] or raw["partner"]):
        return {"lines": [], "currency": raw["currency"] or COMPANY_CURRENCY, "net": "", "tax": "", "total": "",
                "message": "" if not rows else str(kind.words["pick_partner_first"])}
    try:
        resolve_codes(ctx.s, kind, raw)
        raw["lines"] = [raw["lines"][i] for i in rows]
        data = order_input({**raw, "warehouse_id": raw["warehouse_id"] or "1"})
        lines, totals = price_preview(ctx.s, data)
    except ErpError as exc:
        m = error_message(exc)
        return {"error": m["text"], "fix": m["fix"], "field": getattr(exc, "field", None)}, 422
    return {"currency": data["currency"] or COMPANY_CURRENCY, "message": "",
            "lines": [{"row": i, "unit_price": money(l.unit_price_currency), "discount": pct(l.discount_percent)
                       if l.discount_percent else "", "price": money(pricing.discounted_unit_price(
                           l.unit_price_currency, l.discount_percent)), "net": money(l.net_amount_currency),
                       "tax": money(l.tax_amount_currency)} for i, l in zip(rows, lines)],
            "net": money(totals.net_total_currency), "tax": money(totals.tax_total_currency),
            "total": money(totals.gross_total_currency)}


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


def handle_form_post(ctx, kind: Kind, create: Callable, editing=None):
    """Save (or preview, or add lines to) the order; on an error show the form again with the input.
    Editing a draft, `create` is the service's update of that order."""
    raw = read_form(request.form)
    do = request.form.get("do", "save")
    if do == "more":
        raw["lines"].extend(blank_form(DEFAULT_LINES)["lines"][: MAX_FORM_LINES - len(raw["lines"])])
        return render_form(ctx, kind, raw, editing=editing)
    try:
        resolve_codes(ctx.s, kind, raw)
        data = order_input(raw)
        if do == "preview":
            return render_form(ctx, kind, raw, preview=preview_order(ctx, create, data), editing=editing)
        with ctx.s.begin_nested():
            order = create(ctx.s, data)
    except ErpError as exc:
        return render_form(ctx, kind, raw, error=error_message(exc), status=exc.status, editing=editing)
    ctx.flash(str(kind.words["saved"]) % {"number": order.number, "net": money(order.net_total),
                                      "tax": money(order.tax_total), "total": money(order.gross_total)})
    return redirect(url_for(kind.endpoint("order"), order_id=order.id), 303)


# ---- the list and the page -------------------------------------------------------------------

def _order_columns(kind: Kind) -> dict:
    model = kind.model
    return {"number": model.number, "date": model.order_date, "partner": Partner.name, "state": model.state,
            "net": model.net_total, "tax": model.tax_total, "total": model.gross_total}


def order_list(ctx, kind: Kind):
    """The orders the filters choose (state, partner code, date range, text), sorted by a column;
    with format=csv all of them as a CSV file."""
    model = kind.model
    columns = _order_columns(kind)
    listing = listing_of(columns, "-date")
    state = request.args.get("state", "").strip()
    if state not in kind.machine.states:
        state = ""
    q = request.args.get("q", "").strip()[:100]
    partner = request.args.get("partner", "").strip()[:32]
    stmt = select(model, Partner.code, Partner.name).join(Partner, Partner.id == model.partner_id)
    if state:
        stmt = stmt.where(model.state == state)
    if partner:
        stmt = stmt.where(func.lower(Partner.code) == partner.lower())
    if q:
        stmt = stmt.where(or_(func.lower(model.number).contains(q.lower(), autoescape=True),
                              masterdata.matching(Partner, q)))
    stmt = stmt.where(*listing_in_range(model.order_date, listing, datetime=True))
    if listing.csv:
        rows = all_rows(ctx.s, stmt, columns, listing, model.id)
        return csv_response(kind.key, [_("Number"), _("Date"), _("Partner code"), _("Partner"), _("State"),
                                       _("Currency"), _("Net"), _("Tax"), _("Total")],
                            ([o.number, o.order_date, code, name, term(o.state), COMPANY_CURRENCY, o.net_total,
                              o.tax_total, o.gross_total] for o, code, name in rows))
    total, rows = page_of(ctx.s, stmt, columns, listing, model.id)
    return render_template("order_list.html", kind=kind, rows=rows, state=state, q=q, partner=partner,
                           total=total, listing=listing, offset=listing.offset, page_size=PAGE_SIZE)


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
    link = Return.sales_order_id if kind.key == "sales" else Return.purchase_order_id
    returned = s.execute(select(Return, CreditNote).outerjoin(CreditNote, CreditNote.return_id == Return.id)
                         .where(link == order.id).order_by(Return.id)).all() if ctx.may("stock.read") else []
    return render_template(
        "order.html", kind=kind, order=order, lines=order.lines, products=products, on_hand=on_hand, returns=returned,
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
             kind.words["change"], method="POST", back=kind.endpoint("order"))(act)
