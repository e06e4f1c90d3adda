"""Purchasing: the purchase order list, the entry form, the order page and its transitions."""

from __future__ import annotations

from flask import request
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from ..api import schemas as S
from ..domain.states import PURCHASE_ORDER
from ..models import PurchaseOrder
from ..services import purchasing
from .framework import page, parse_form
from .i18n import money
from .orders import (Action, Kind, blank_form, handle_form_post, live_totals, order_list, order_page,
                     register_actions, render_form)

KIND = Kind(key="purchases", partner_role="supplier", model=PurchaseOrder,
            machine=PURCHASE_ORDER, read_perm="purchasing.read", write_perm="purchasing.write", words={
                "title": _l("Purchase order"), "titles": _l("Purchase orders"), "new": _l("New purchase order"),
                "partner": _l("Supplier"), "partner_placeholder": _l("supplier code or name"),
                "unknown_partner": _l("no active supplier has the code %(code)s"),
                "pick_partner_first": _l("Pick the supplier to see the totals."),
                "search_hint": _l("number, supplier name or code"),
                "price_hint": _l("required: the supplier's price"), "unit_price_placeholder": _l("required"),
                "none_match": _l("No purchase orders match."), "all_link": _l("All purchase orders"),
                "change": _l("change purchase orders"),
                "saved": _l("Purchase order %(number)s saved: net %(net)s, tax %(tax)s, total %(total)s.")})


def _confirm(ctx, order_id):
    return _("Purchase order %(number)s confirmed.", number=purchasing.confirm(ctx.s, order_id).number)


def _receive(ctx, order_id):
    return _("Purchase order %(number)s received into stock.", number=purchasing.receive(ctx.s, order_id).number)


def _bill(ctx, order_id):
    body = parse_form(S.BillIn, {"supplier_reference": request.form.get("supplier_reference", "").strip() or None})
    bill = purchasing.bill(ctx.s, order_id, body.supplier_reference)
    return _("Supplier bill %(number)s booked: total %(total)s, due %(due)s.", number=bill.number,
             total=money(bill.gross_total), due=bill.due_date.isoformat())


def _cancel(ctx, order_id):
    return _("Purchase order %(number)s cancelled.", number=purchasing.cancel(ctx.s, order_id).number)


ACTIONS = {
    "confirm": Action("confirm", _l("Confirm"), "purchasing.write", _confirm, "primary"),
    "receive": Action("receive", _l("Receive"), "stock.write", _receive, "primary"),
    "bill": Action("bill", _l("Book bill"), "finance.write", _bill, "primary"),
    "cancel": Action("cancel", _l("Cancel order"), "purchasing.write", _cancel, "danger"),
}


@page("/app/purchases", "purchasing.read", _l("see purchase orders"))
def purchases_list(ctx):
    return order_list(ctx, KIND)


@page("/app/purchases/new", "purchasing.write", _l("enter purchase orders"))
def purchases_new(ctx):
    return render_form(ctx, KIND, blank_form())


@page("/app/purchases/new", "purchasing.write", _l("enter purchase orders"), method="POST",
      endpoint="purchases_create", back="web.purchases_new")
def purchases_create(ctx):
    return handle_form_post(ctx, KIND, purchasing.create)


@page("/app/purchases/price", "purchasing.write", _l("enter purchase orders"))
def purchases_price(ctx):
    return live_totals(ctx, KIND, purchasing.price_preview)


@page("/app/purchases/<int:order_id>", "purchasing.read", _l("see purchase orders"))
def purchases_order(ctx, order_id):
    return order_page(ctx, KIND, purchasing.get(ctx.s, order_id), ACTIONS)


register_actions(KIND, ACTIONS)
