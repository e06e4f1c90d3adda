"""Purchasing: the purchase order list, the entry form, the order page and its transitions."""

from __future__ import annotations

from flask import request

from ..api import schemas as S
from ..domain.states import PURCHASE_ORDER
from ..models import PurchaseOrder
from ..services import purchasing
from .framework import page, parse_form
from .orders import (Action, Kind, blank_form, handle_form_post, order_list, order_page, register_actions,
                     render_form)

KIND = Kind(key="purchases", title="Purchase order", partner_role="supplier", model=PurchaseOrder,
            machine=PURCHASE_ORDER, read_perm="purchasing.read", write_perm="purchasing.write",
            price_hint="required: the supplier's price")


def _confirm(ctx, order_id):
    return f"Purchase order {purchasing.confirm(ctx.s, order_id).number} confirmed."


def _receive(ctx, order_id):
    return f"Purchase order {purchasing.receive(ctx.s, order_id).number} received into stock."


def _bill(ctx, order_id):
    body = parse_form(S.BillIn, {"supplier_reference": request.form.get("supplier_reference", "").strip() or None})
    bill = purchasing.bill(ctx.s, order_id, body.supplier_reference)
    return f"Supplier bill {bill.number} booked: total {bill.gross_total:,.2f}, due {bill.due_date.isoformat()}."


def _cancel(ctx, order_id):
    return f"Purchase order {purchasing.cancel(ctx.s, order_id).number} cancelled."


ACTIONS = {
    "confirm": Action("confirm", "Confirm", "purchasing.write", _confirm, "primary"),
    "receive": Action("receive", "Receive", "stock.write", _receive, "primary"),
    "bill": Action("bill", "Book bill", "finance.write", _bill, "primary"),
    "cancel": Action("cancel", "Cancel order", "purchasing.write", _cancel, "danger"),
}


@page("/app/purchases", "purchasing.read", "see purchase orders")
def purchases_list(ctx):
    return order_list(ctx, KIND)


@page("/app/purchases/new", "purchasing.write", "enter purchase orders")
def purchases_new(ctx):
    return render_form(ctx, KIND, blank_form())


@page("/app/purchases/new", "purchasing.write", "enter purchase orders", method="POST",
      endpoint="purchases_create", back="web.purchases_new")
def purchases_create(ctx):
    return handle_form_post(ctx, KIND, purchasing.create)


@page("/app/purchases/<int:order_id>", "purchasing.read", "see purchase orders")
def purchases_order(ctx, order_id):
    return order_page(ctx, KIND, purchasing.get(ctx.s, order_id), ACTIONS)


register_actions(KIND, ACTIONS)
