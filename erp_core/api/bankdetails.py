"""Partners' bank-account changes: asked for by one finance user, approved or rejected by another."""

from sqlalchemy import func, select

from ..models import BankDetailChange, Partner
from ..services import bankdetails
from . import schemas as S
from .framework import operation

TAG = "partners"


def _out(ctx, change):
    partner = ctx.s.get(Partner, change.partner_id)
    return bankdetails.view(change, partner.code, partner.name, ctx.may("partners.sensitive"))


@operation("/partners/<int:partner_id>/bank-account-changes", "POST", tag=TAG, perm="partners.bank",
           summary="Ask for a change of a partner's bank account (in effect once another finance user approves)",
           body=S.BankChangeIn, response=S.BankChangeOut, status=201)
def request_change(ctx, partner_id):
    return _out(ctx, bankdetails.request_change(ctx.s, partner_id, ctx.body.bank_account, ctx.body.note))


@operation("/bank-account-changes", tag=TAG, perm="partners.sensitive", query=S.BankChangeQuery,
           summary="List bank-account changes (pending first to decide)", response=S.Page[S.BankChangeOut])
def list_changes(ctx):
    q = ctx.query
    rows = bankdetails.changes(ctx.s, q.state, q.partner_id, limit=q.offset + q.limit)[q.offset:]
    stmt = select(func.count()).select_from(BankDetailChange)
    if q.state:
        stmt = stmt.where(BankDetailChange.state == q.state)
    if q.partner_id:
        stmt = stmt.where(BankDetailChange.partner_id == q.partner_id)
    see = ctx.may("partners.sensitive")
    return {"items": [bankdetails.view(c, code, name, see) for c, code, name in rows],
            "total": ctx.s.scalar(stmt), "limit": q.limit, "offset": q.offset}


@operation("/bank-account-changes/<int:change_id>/approve", "POST", tag=TAG, perm="partners.bank",
           summary="Approve a bank-account change asked for by another finance user", response=S.BankChangeOut)
def approve(ctx, change_id):
    return _out(ctx, bankdetails.approve(ctx.s, change_id))


@operation("/bank-account-changes/<int:change_id>/reject", "POST", tag=TAG, perm="partners.bank",
           summary="Reject a bank-account change asked for by another finance user", body=S.BankChangeReject,
           response=S.BankChangeOut)
def reject(ctx, change_id):
    return _out(ctx, bankdetails.reject(ctx.s, change_id, ctx.body.reason))
