"""Sales: the order list, the entry form, the order page and its transitions."""

from __future__ import annotations

from flask import request
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from ..api import schemas as S
from ..domain.states import SALES_ORDER
from ..models import SalesOrder, Warehouse
from ..services import sales
from .framework import form_id, page, parse_form
from .i18n import money
from .orders import (Action, Kind, blank_form, handle_form_post, live_totals, order_as_form, order_list,
                     order_page, register_actions, render_form)

KIND = Kind(key="sales", partner_role="customer", model=SalesOrder, machine=SALES_ORDER,
            read_perm="sales.read", write_perm="sales.write", words={
                "title": _l("Sales order"), "titles": _l("Sales orders"), "new": _l("New sales order"),
                "partner": _l("Customer"), "partner_placeholder": _l("customer code or name"),
                "unknown_partner": _l("no active customer has the code %(code)s"),
                "pick_partner_first": _l("Pick the customer to see its prices."),
                "search_hint": _l("number, customer name or code"),
                "price_hint": _l("blank: the customer's price list, else the product's price"),
                "unit_price_placeholder": _l("list price"), "none_match": _l("No sales orders match."),
                "all_link": _l("All sales orders"), "change": _l("change sales orders"),
                "saved": _l("Sales order %(number)s saved: net %(net)s, tax %(tax)s, total %(total)s.")})


def _confirm(ctx, order_id):
    order = sales.confirm(ctx.s, order_id)
    return _("Sales order %(number)s confirmed.", number=order.number)


def _deliver(ctx, order_id):
    body = parse_form(S.DeliverIn, {"warehouse_id": form_id(request.form.get("warehouse_id", "")) or None})
    order = sales.deliver(ctx.s, order_id, body.warehouse_id)
    wh = ctx.s.get(Warehouse, order.warehouse_id)
    return _("Sales order %(number)s delivered from %(warehouse)s.", number=order.number, warehouse=wh.code)


def _invoice(ctx, order_id):
    inv = sales.invoice(ctx.s, order_id)
    return _("Invoice %(number)s issued: total %(total)s, due %(due)s.", number=inv.number,
             total=money(inv.gross_total), due=inv.due_date.isoformat())


def _cancel(ctx, order_id):
    order = sales.cancel(ctx.s, order_id)
    return _("Sales order %(number)s cancelled.", number=order.number)


ACTIONS = {
    "confirm": Action("confirm", _l("Confirm"), "sales.write", _confirm, "primary"),
    "deliver": Action("deliver", _l("Deliver"), "stock.write", _deliver, "primary"),
    "invoice": Action("invoice", _l("Invoice"), "finance.write", _invoice, "primary"),
    "cancel": Action("cancel", _l("Cancel order"), "sales.write", _cancel, "danger"),
}


@page("/app/sales", "sales.read", _l("see sales orders"))
def sales_list(ctx):
    return order_list(ctx, KIND)


@page("/app/sales/new", "sales.write", _l("enter sales orders"))
def sales_new(ctx):
    return render_form(ctx, KIND, blank_form())


@page("/app/sales/new", "sales.write", _l("enter sales orders"), method="POST", endpoint="sales_create",
      back="web.sales_new")
def sales_create(ctx):
    return handle_form_post(ctx, KIND, sales.create)


@page("/app/sales/price", "sales.write", _l("enter sales orders"))
def sales_price(ctx):
    return live_totals(ctx, KIND, sales.price_preview)


@page("/app/sales/<int:order_id>/edit", "sales.write", _l("change sales orders"))
def sales_edit(ctx, order_id):
    order = sales.get(ctx.s, order_id)
    return render_form(ctx, KIND, order_as_form(order), editing=order)


@page("/app/sales/<int:order_id>/edit", "sales.write", _l("change sales orders"), method="POST",
      endpoint="sales_update", back="web.sales_edit")
def sales_update(ctx, order_id):
    order = sales.get(ctx.s, order_id)
    return handle_form_post(ctx, KIND, lambda s, data: sales.update_draft(s, order_id, data), editing=order)


@page("/app/sales/<int:order_id>", "sales.read", _l("see sales orders"))
def sales_order(ctx, order_id):
    return order_page(ctx, KIND, sales.get(ctx.s, order_id), ACTIONS)


register_actions(KIND, ACTIONS)
