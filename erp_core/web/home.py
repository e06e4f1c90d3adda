"""Login, logout, the dashboard, and the pages around them."""

from __future__ import annotations

import secrets

from flask import current_app, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import func, select

from ..api import schemas as S
from ..errors import ErpError
from ..models import PurchaseOrder, SalesOrder
from ..services import auth, mfa, passwords, reports
from . import i18n, mfa_pages
from .framework import (ANY_USER, CSRF_KEY, TOKEN_KEY, check_csrf, error_message, flash_ok, page, parse_form,
                        render_error, safe_next, web)

OPEN_SALES = ("draft", "confirmed", "delivered", "invoiced")
OPEN_PURCHASES = ("draft", "confirmed", "received", "billed")


@web.get("/")
def root():
    return redirect(url_for("web.dashboard"))


@web.get("/app")
def app_root():
    return redirect(url_for("web.dashboard"))


def _insecure_hint() -> str | None:
    """Browsers drop the Secure session cookie on plain HTTP except on this machine."""
    host = (request.host or "").rsplit(":", 1)[0].strip("[]")
    if request.is_secure or request.headers.get("X-Forwarded-Proto", "") == "https" \
            or host in ("localhost", "127.0.0.1", "::1"):
        return None
    return _("This page was not opened over HTTPS: your browser will not keep the login. "
             "Open the ERP through its https:// address.")


@web.route("/app/login", methods=["GET", "POST"])
def login():
    nxt = safe_next(request.values.get("next"))
    if request.method == "GET":
        if request.args.get("lang") in i18n.LOCALES:
            session[i18n.LANG_KEY] = request.args["lang"]
            i18n.refresh()
        if session.get(TOKEN_KEY):
            return redirect(nxt or url_for("web.dashboard"))
        return render_template("login.html", next=nxt, username="", error=None, hint=_insecure_hint())
    check_csrf()
    username = request.form.get("username", "").strip()
    cfg = current_app.config["ERP_SETTINGS"]
    db = current_app.extensions["erp_db"]
    try:
        creds = parse_form(S.LoginIn, {"username": username, "password": request.form.get("password", "")})
        with db.session() as s:  # allowed in maintenance, as the API's login is
            _none, _user, _when = auth.login(
                s, creds.username, creds.password, request.remote_addr or "",
                ttl_seconds=cfg.token_ttl_seconds, max_failures=cfg.login_max_failures,
                window_seconds=cfg.login_window_seconds, issue=False)
            lang = _user.locale or session.get(i18n.LANG_KEY)
            forced = passwords.must_change(_user)  # after a second factor too: web/framework.py keeps to it
            step = mfa.after_password(s, _user, cfg.mfa_roles)  # a second factor first (web/mfa_pages.py)
            if step is None:
                token, _expires = auth.issue_token(s, _user, request.remote_addr or "",
                                                   ttl_seconds=cfg.token_ttl_seconds,
                                                   user_agent=request.headers.get("User-Agent", ""))
    except ErpError as exc:
        return render_template("login.html", next=nxt, username=username, error=error_message(exc),
                               hint=_insecure_hint()), exc.status, exc.headers
    session.clear()  # a fresh session (and CSRF token) after login
    if lang:
        session[i18n.LANG_KEY] = lang
    if step is not None:
        return mfa_pages.to_second_step(step, nxt)
    session[TOKEN_KEY] = token
    session[CSRF_KEY] = secrets.token_urlsafe(32)
    if forced:
        return redirect(url_for("web.account_password"), 303)
    return redirect(nxt or url_for("web.dashboard"), 303)


@web.post("/app/logout")
def logout():
    check_csrf()
    token = session.get(TOKEN_KEY)
    if token:
        db = current_app.extensions["erp_db"]
        with db.session() as s:  # allowed in maintenance
            user = auth.resolve_token(s, token)
            if user is not None:
                s.info["actor"] = user.username
                auth.logout(s, token)
    lang = session.get(i18n.LANG_KEY)
    session.clear()
    if lang:
        session[i18n.LANG_KEY] = lang
    flash_ok(_("You are logged out."))
    return redirect(url_for("web.login"), 303)


LOW_STOCK_SHOWN = 10  # rows of the dashboard's low-stock box (the rest: the reorder levels page)


@page("/app/", ANY_USER, _l("see the dashboard"))
def dashboard(ctx):
    s = ctx.s
    data = {}
    if ctx.may("sales.read"):
        counts = dict(s.execute(select(SalesOrder.state, func.count()).where(SalesOrder.state.in_(OPEN_SALES))
                                .group_by(SalesOrder.state)).all())
        data["sales"] = [(state, counts.get(state, 0)) for state in OPEN_SALES]
    if ctx.may("purchasing.read"):
        counts = dict(s.execute(select(PurchaseOrder.state, func.count())
                                .where(PurchaseOrder.state.in_(OPEN_PURCHASES)).group_by(PurchaseOrder.state)).all())
        data["purchases"] = [(state, counts.get(state, 0)) for state in OPEN_PURCHASES]
    if ctx.may("stock.read"):
        data["low_stock"] = reports.low_stock(s)
    if ctx.may("reports.read"):
        data["receivables"] = reports.outstanding(s, "customer")
        data["payables"] = reports.outstanding(s, "supplier")
    return render_template("dashboard.html", low_stock_shown=LOW_STOCK_SHOWN, **data)


@web.route("/app/<path:rest>", methods=["GET", "POST"])
def unknown(rest):
    return render_error(404, _("Not found"), _("There is no page at /app/%(rest)s.", rest=rest),
                        _("Use the links in the menu."))
