"""Customer and supplier returns, and the credit and debit notes they issue."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Literal

from pydantic import Field
from sqlalchemy import select

from ..errors import NotFound
from ..models import CreditNote, Return
from ..services import returns
from . import schemas as S
from .framework import operation, paginate


class ReturnLineIn(S.In):
    order_line_id: S.Id = Field(description="A line of the order returned against")
    quantity: S.Quantity = Field(description="At most what was delivered (received) and not yet returned")


class ReturnIn(S.In):
    lines: list[ReturnLineIn] = Field(min_length=1, max_length=500)
    warehouse_id: S.Id | None = Field(None, description="Customer returns: where the goods come back to; "
                                                        "supplier returns: where they leave from (default: the order's)")
    reason: S.Text(500) | None = None


class PostIn(S.In):
    date: S.Day | None = Field(None, description="The note's issue date (default today)")


class CreditNoteOut(S.Out):
    id: int
    number: str
    kind: Literal["credit", "debit"] = Field(description="credit: to a customer (CN...); debit: to a supplier (DN...)")
    return_id: int
    invoice_id: int = Field(description="The invoice (bill) it reverses lines of and settles")
    partner_id: int
    issue_date: dt.date
    currency: str
    exchange_rate: Decimal
    net_total: Decimal
    tax_total: Decimal
    gross_total: Decimal
    net_total_currency: Decimal
    tax_total_currency: Decimal
    gross_total_currency: Decimal
    applied: Decimal = Field(description="What of it settled its invoice (company currency)")
    unapplied: Decimal = Field(description="The partner's balance it leaves: a customer's credit, what a supplier owes back")
    journal_entry_id: int | None


class ReturnLineOut(S.Out):
    id: int
    order_line_id: int
    product_id: int
    quantity: Decimal
    unit_cost: Decimal | None = Field(description="The unit cost the goods moved at (set when posted)")
    net_amount: Decimal
    tax_amount: Decimal
    net_amount_currency: Decimal
    tax_amount_currency: Decimal


class ReturnOut(S.Out):
    id: int
    number: str
    kind: Literal["customer", "supplier"]
    partner_id: int
    sales_order_id: int | None
    purchase_order_id: int | None
    warehouse_id: int
    state: Literal["draft", "posted", "cancelled"]
    reason: str
    created_at: dt.datetime
    posted_at: dt.datetime | None
    lines: list[ReturnLineOut]
    credit_note: CreditNoteOut | None = Field(None, description="Issued when the return is posted")


class ReturnQuery(S.PageQuery):
    kind: Literal["customer", "supplier"] | None = None
    state: Literal["draft", "posted", "cancelled"] | None = None


class NoteQuery(S.PageQuery):
    kind: Literal["credit", "debit"] | None = None
    partner_id: S.Id | None = None
    invoice_id: S.Id | None = None


def _out(s, ret: Return) -> dict:
    out = ReturnOut.model_validate(ret).model_dump()
    note = returns.note_of(s, ret)
    out["credit_note"] = CreditNoteOut.model_validate(note).model_dump() if note else None
    return out


@operation("/sales-orders/<int:order_id>/returns", "POST", summary="Create a customer return (draft)",
           tag="returns", perm="stock.write", body=ReturnIn, response=ReturnOut, status=201, idempotent=True,
           location="/returns/{id}")
def create_sales_return(ctx, order_id):
    """409 unless the order is invoiced (or paid); 422 naming the line when a quantity exceeds what was
    delivered and not yet returned."""
    return _out(ctx.s, returns.create(ctx.s, "customer", order_id, ctx.body.model_dump()))


@operation("/purchase-orders/<int:order_id>/returns", "POST", summary="Create a supplier return (draft)",
           tag="returns", perm="stock.write", body=ReturnIn, response=ReturnOut, status=201, idempotent=True,
           location="/returns/{id}")
def create_purchase_return(ctx, order_id):
    """409 unless the order is billed (or paid); 422 naming the line when a quantity exceeds what was
    received and not yet returned."""
    return _out(ctx.s, returns.create(ctx.s, "supplier", order_id, ctx.body.model_dump()))


@operation("/returns", summary="List returns", tag="returns", perm="stock.read", query=ReturnQuery,
           response=S.Page[ReturnOut])
def list_returns(ctx):
    stmt = select(Return).order_by(Return.id.desc())
    for column in ("kind", "state"):
        if getattr(ctx.query, column):
            stmt = stmt.where(getattr(Return, column) == getattr(ctx.query, column))
    return paginate(ctx, stmt, lambda r: _out(ctx.s, r))


@operation("/returns/<int:return_id>", summary="Get a return with its note", tag="returns", perm="stock.read",
           response=ReturnOut)
def get_return(ctx, return_id):
    return _out(ctx.s, returns.get(ctx.s, return_id))


@operation("/returns/<int:return_id>/post", "POST", summary="Post a return: move the goods, issue the note",
           tag="returns", perm="finance.write", body=PostIn, response=ReturnOut)
def post_return(ctx, return_id):
    """409 when it is not a draft, or when a return posted meanwhile leaves less to return."""
    return _out(ctx.s, returns.post(ctx.s, return_id, ctx.body.date))


@operation("/returns/<int:return_id>/cancel", "POST", summary="Cancel a draft return", tag="returns",
           perm="stock.write", response=ReturnOut)
def cancel_return(ctx, return_id):
    return _out(ctx.s, returns.cancel(ctx.s, return_id))


@operation("/credit-notes", summary="List credit notes (customers) and debit notes (suppliers)", tag="finance",
           perm="finance.read", query=NoteQuery, response=S.Page[CreditNoteOut])
def list_notes(ctx):
    stmt = select(CreditNote).order_by(CreditNote.id.desc())
    for column in ("kind", "partner_id", "invoice_id"):
        if getattr(ctx.query, column) is not None:
            stmt = stmt.where(getattr(CreditNote, column) == getattr(ctx.query, column))
    return paginate(ctx, stmt)


@operation("/credit-notes/<int:note_id>", summary="Get a credit or debit note", tag="finance", perm="finance.read",
           response=CreditNoteOut)
def get_note(ctx, note_id):
    note = ctx.s.get(CreditNote, note_id)
    if note is None:
        raise NotFound(f"credit note {note_id} does not exist.", fix="Use the id of an existing credit note.")
    return note
