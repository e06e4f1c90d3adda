"""Finance reports with their detail: the general ledger of one account (opening balance, each line
with the running balance, closing balance) and the aging of what customers owe and what is owed to
suppliers, by due-date bucket; one partner's ledger (its documents and payments with the running
balance). The figures are the services' reports (services.reports), shown as they are; a line leads
to its document, a partner to its ledger."""

from __future__ import annotations

import datetime as dt

from flask import render_template, request
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from ..errors import ValidationFailed
from ..models import Account, Partner
from ..services import reports
from ..services.common import get_or_404
from .framework import error_message, page
from .listing import csv_response, date_arg

BUCKET_LABELS = {"current": _l("Not yet due"), "days_1_30": _l("1–30 days"), "days_31_60": _l("31–60 days"),
                 "days_61_90": _l("61–90 days"), "over_90": _l("Over 90 days")}


PAGE_LINES = 500  # lines the page lists (the totals and the closing balance cover the whole range)
CSV_LINES = 100_000


@page("/app/reports/general-ledger", "reports.read", _l("read financial reports"))
def general_ledger(ctx):
    s = ctx.s
    errors: list = []
    accounts = s.execute(select(Account.code, Account.name).order_by(Account.code)).all()
    code = request.args.get("account", "").strip()[:16] or (accounts[0].code if accounts else "")
    date_from, date_to = date_arg("date_from", errors), date_arg("date_to", errors)
    if "date_from" not in request.args and "date_to" not in request.args:
        date_from = dt.date.today().replace(day=1)  # this month, first: the form widens it (empty: all history)
    report = None
    try:
        csv = request.args.get("format") == "csv"
        report = reports.general_ledger(s, code, date_from, date_to, limit=CSV_LINES if csv else PAGE_LINES)
    except ValidationFailed as exc:
        errors.append(error_message(exc))
    if report is not None and request.args.get("format") == "csv":
        return csv_response(f"ledger-{report['account']['code']}", [
            _("Date"), _("Entry"), _("Memo"), _("Partner"), _("Debit"),
            _("Credit"), _("Balance")],
            [[None, None, _("Opening balance"), None, None, None, report["opening"]]]
            + [[r["date"], r["number"], r["memo"], r["partner_code"], r["debit"], r["credit"], r["balance"]]
               for r in report["lines"]])
    docs = reports.documents_of_entries(s, [r["entry_id"] for r in report["lines"]]) if report else {}
    return render_template("general_ledger.html", report=report, accounts=accounts, code=code,
                           date_from=date_from, date_to=date_to, errors=errors, docs=docs)


@page("/app/reports/aging", "reports.read", _l("read financial reports"))
def aging(ctx):
    errors: list = []
    kind = request.args.get("kind", "customer")
    kind = kind if kind in ("customer", "supplier") else "customer"
    as_of = date_arg("as_of", errors)
    report = reports.aging(ctx.s, kind, as_of)
    return render_template("aging.html", report=report, kind=kind, as_of=as_of, errors=errors,
                           detail=request.args.get("detail") == "1",
                           buckets=reports.AGING_BUCKETS, labels=BUCKET_LABELS)


@page("/app/partners/<int:partner_id>/ledger", "reports.read", _l("read financial reports"))
def partner_ledger(ctx, partner_id):
    """One customer's or supplier's documents and payments with the running balance (services.reports)."""
    get_or_404(ctx.s, Partner, partner_id, "partner")
    report = reports.partner_ledger(ctx.s, partner_id)
    if request.args.get("format") == "csv":
        return csv_response(f"partner-ledger-{report['partner']['code']}", [
            _("Date"), _("Entry"), _("Memo"), _("Document"), _("Debit"), _("Credit"), _("Balance")],
            [[r["date"], r["number"], r["memo"], (r["document"] or {}).get("number"), r["debit"], r["credit"],
              r["balance"]] for r in report["lines"]])
    return render_template("partner_ledger.html", report=report)
