"""Sales: the order list, the entry form, the order page and its transitions."""

from __future__ import annotations

from flask import request

from ..api import schemas as S
from ..domain.states import SALES_ORDER
from ..models import SalesOrder, Warehouse
from ..services import sales
from .framework import form_id, page, parse_form
from .orders import (Action, Kind, blank_form, handle_form_post, order_list, order_page, register_actions,
                     render_form)

KIND = Kind(key="sales", title="Sales order", partner_role="customer", model=SalesOrder, machine=SALES_ORDER,
            read_perm="sales.read", write_perm="sales.write",
            price_hint="blank: the customer's price list, else the product's price")


def _confirm(ctx, order_id):
    order = sales.confirm(ctx.s, order_id)
    return f"Sales order {order.number} confirmed."


def _deliver(ctx, order_id):
    body = parse_form(S.DeliverIn, {"warehouse_id": form_id(request.form.get("warehouse_id", "")) or None})
    order = sales.deliver(ctx.s, order_id, body.warehouse_id)
    wh = ctx.s.get(Warehouse, order.warehouse_id)
    return f"Sales order {order.number} delivered from {wh.code}."


def _invoice(ctx, order_id):
    inv = sales.invoice(ctx.s, order_id)
    return f"Invoice {inv.number} issued: total {inv.gross_total:,.2f}, due {inv.due_date.isoformat()}."


def _cancel(ctx, order_id):
    order = sales.cancel(ctx.s, order_id)
    return f"Sales order {order.number} cancelled."


ACTIONS = {
    "confirm": Action("confirm", "Confirm", "sales.write", _confirm, "primary"),
    "deliver": Action("deliver", "Deliver", "stock.write", _deliver, "primary"),
    "invoice": Action("invoice", "Invoice", "finance.write", _invoice, "primary"),
    "cancel": Action("cancel", "Cancel order", "sales.write", _cancel, "danger"),
}


@page("/app/sales", "sales.read", "see sales orders")
def sales_list(ctx):
    return order_list(ctx, KIND)


@page("/app/sales/new", "sales.write", "enter sales orders")
def sales_new(ctx):
    return render_form(ctx, KIND, blank_form())


@page("/app/sales/new", "sales.write", "enter sales orders", method="POST", endpoint="sales_create",
      back="web.sales_new")
def sales_create(ctx):
    return handle_form_post(ctx, KIND, sales.create)


@page("/app/sales/<int:order_id>", "sales.read", "see sales orders")
def sales_order(ctx, order_id):
    return order_page(ctx, KIND, sales.get(ctx.s, order_id), ACTIONS)


register_actions(KIND, ACTIONS)
