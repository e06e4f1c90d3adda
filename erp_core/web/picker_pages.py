"""Search as you type for the order forms' pickers: JSON lists of the first matches of products and
partners by code or name (services.masterdata.pick: folded, the same on SQLite and PostgreSQL), with
the permission the matching list page needs. The forms work without them: a code typed in the text
field is resolved on the server (orders.resolve_codes)."""

from __future__ import annotations

from flask import request
from flask_babel import lazy_gettext as _l

from ..models import Partner, Product
from ..services import masterdata
from .framework import int_arg, page
from .i18n import money

MAX_LIMIT = 50


def _limit() -> int:
    return min(max(int_arg("limit", masterdata.PICK_LIMIT) or masterdata.PICK_LIMIT, 1), MAX_LIMIT)


@page("/app/search/products", "products.read", _l("see products"))
def search_products(ctx):
    rows, more = masterdata.pick(ctx.s, Product, request.args.get("q", ""), _limit())
    return {"items": [{"id": p.id, "code": p.sku, "name": p.name, "label": f"{p.sku} — {p.name}",
                       "detail": f"{money(p.sale_price)}/{p.unit}"} for p in rows], "more": more}


@page("/app/search/partners", "partners.read", _l("see customers and suppliers"))
def search_partners(ctx):
    role = request.args.get("role", "")
    rows, more = masterdata.pick(ctx.s, Partner, request.args.get("q", ""), _limit(),
                                 role=role if role in ("customer", "supplier") else None)
    return {"items": [{"id": p.id, "code": p.code, "name": p.name, "label": f"{p.code} — {p.name}", "detail": ""}
                      for p in rows], "more": more}
