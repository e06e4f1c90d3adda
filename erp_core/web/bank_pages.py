"""Finance: partners' bank-account changes -- asked for by one finance user, approved or rejected by
another (four-eyes, services/bankdetails.py); the partner keeps its account until then."""

from __future__ import annotations

from flask import redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import func, select

from ..api import schemas as S
from ..errors import ValidationFailed
from ..models import Partner
from ..services import bankdetails
from .framework import page, parse_form

BACK = "web.bank_changes"


@page("/app/bank-details", "partners.sensitive", _l("see bank-detail changes"))
def bank_changes(ctx):
    state = request.args.get("state", "pending")
    state = state if state in bankdetails.STATES else ""
    see = ctx.may("partners.sensitive")
    rows = [bankdetails.view(c, code, name, see) for c, code, name in bankdetails.changes(ctx.s, state or None)]
    return render_template("bank_changes.html", rows=rows, state=state, states=bankdetails.STATES)


@page("/app/bank-details", "partners.bank", _l("ask for bank-detail changes"), method="POST", back=BACK,
      endpoint="bank_change_request")
def bank_change_request(ctx):
    code = request.form.get("partner_code", "").strip()
    partner_id = ctx.s.scalar(select(Partner.id).where(func.lower(Partner.code) == code.lower())) if code else None
    if partner_id is None:
        raise ValidationFailed(_("There is no customer or supplier with code '%(code)s'.", code=code),
                               field="partner_code", fix=_("Enter the code shown on the Partners page."))
    body = parse_form(S.BankChangeIn, {"bank_account": request.form.get("bank_account", ""),
                                       "note": request.form.get("note", "").strip() or None})
    change = bankdetails.request_change(ctx.s, partner_id, body.bank_account, body.note)
    ctx.flash(_("Change %(id)s asked for; it takes effect once another finance user approves it.", id=change.id))
    return redirect(url_for(BACK), 303)


@page("/app/bank-details/<int:change_id>/approve", "partners.bank", _l("approve bank-detail changes"),
      method="POST", back=lambda change_id: url_for(BACK))
def bank_change_approve(ctx, change_id):
    bankdetails.approve(ctx.s, change_id)
    ctx.flash(_("Change %(id)s approved: the new bank account is in effect.", id=change_id))
    return redirect(url_for(BACK), 303)


@page("/app/bank-details/<int:change_id>/reject", "partners.bank", _l("reject bank-detail changes"),
      method="POST", back=lambda change_id: url_for(BACK))
def bank_change_reject(ctx, change_id):
    body = parse_form(S.BankChangeReject, {"reason": request.form.get("reason", "").strip() or None})
    bankdetails.reject(ctx.s, change_id, body.reason)
    ctx.flash(_("Change %(id)s rejected: the bank account stays as it was.", id=change_id))
    return redirect(url_for(BACK), 303)
