"""What every web page shares: the session cookie, CSRF, the login check, the role's permission,
the transaction, the maintenance switch, and errors shown to the user as messages (never a 500).

A page is a function decorated with `page(rule, perm)`. It gets a `Ctx` with the open session and
the user; GET pages read in a read-only transaction, POST actions write in one transaction as the
user (the audit log's actor) after the CSRF token, the permission and the maintenance switch are
checked. An ErpError raised by a service during a POST becomes a flash message (what is wrong and
the fix) on the page the user came from; messages queued with `ctx.flash` are shown only once the
transaction has committed.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import urlsplit

from flask import (Blueprint, current_app, flash, g, redirect, render_template, request, session,
                   url_for)
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import DataError, IntegrityError, OperationalError
from werkzeug.exceptions import HTTPException

from ..db import is_transient, retry_later, retrying
from ..domain import permissions
from ..errors import ErpError, Maintenance, NotFound, ValidationFailed
from ..services import auth, maintenance, passwords
from . import form_errors, i18n
from .terms import term

log = logging.getLogger("erp_core.web")

web = Blueprint("web", __name__, template_folder="templates")

ANY_USER = "authenticated"
TOKEN_KEY = "token"
CSRF_KEY = "csrf"
CSRF_FIELD = "csrf_token"
PAGE_SIZE = 50
# the pages a user whose password was reset may open before changing it (services.passwords)
FORCED_CHANGE_PAGES = {"account_password", "account_password_save"}


# ---- application setup ------------------------------------------------------------------------

@web.record_once
def _setup(state) -> None:
    """The signed session cookie: secure, HttpOnly, SameSite=Lax, only sent to /app. Its signing
    key is derived from the field key (stable across processes and restarts, never the key itself)."""
    app = state.app
    if not app.secret_key:
        settings = app.config["ERP_SETTINGS"]
        app.secret_key = hmac.new(settings.field_key.encode(), b"erp-web-session-cookie-v1",
                                  hashlib.sha256).hexdigest()
    app.config.update(SESSION_COOKIE_NAME="erp_session", SESSION_COOKIE_SECURE=True,
                      SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax",
                      SESSION_COOKIE_PATH="/app")
    i18n.setup(app)


@web.before_request
def _nonce() -> None:
    g.csp_nonce = secrets.token_urlsafe(16)


@web.after_request
def _security_headers(resp):
    nonce = g.get("csp_nonce", "")
    resp.headers.setdefault(
        "Content-Security-Policy",
        f"default-src 'none'; style-src 'nonce-{nonce}'; script-src 'nonce-{nonce}'; connect-src 'self'; "
        "img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'")
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    resp.headers.setdefault("X-Frame-Options", "DENY")
    resp.headers.setdefault("Referrer-Policy", "same-origin")
    resp.headers.setdefault("Cache-Control", "no-store")
    return resp


# ---- template helpers ---------------------------------------------------------------------------

def csrf_token() -> str:
    if CSRF_KEY not in session:
        session[CSRF_KEY] = secrets.token_urlsafe(32)
    return session[CSRF_KEY]


def may(perm: str) -> bool:
    user = g.get("user")
    return user is not None and (perm == ANY_USER or permissions.has(user.role, perm))


@web.context_processor
def _globals():
    return {"csrf_token": csrf_token, "may": may, "current_user": g.get("user"),
            "maintenance_mode": g.get("maintenance"), "csp_nonce": g.get("csp_nonce", ""),
            "html_lang": i18n.html_lang(), "locale": i18n.current(), "locales": i18n.LOCALES,
            "term": term}


for _name in ("money", "currency", "qty", "pct", "date"):
    web.add_app_template_filter(getattr(i18n, _name), _name)
web.add_app_template_filter(term, "term")


# ---- messages -----------------------------------------------------------------------------------

def error_message(exc: Exception) -> dict:
    """What the user reads for a failed action: what is wrong and how to fix it."""
    if isinstance(exc, NotFound) and i18n.current() != i18n.DEFAULT:
        return {"text": _("The record you asked for does not exist."), "fix": _("Pick it from the list.")}
    if isinstance(exc, ErpError):
        return {"text": exc.detail[:1].upper() + exc.detail[1:], "fix": exc.fix or ""}
    if isinstance(exc, IntegrityError):
        return {"text": _("The change conflicts with data stored meanwhile."), "fix": _("Reload the page and retry.")}
    if isinstance(exc, DataError):
        return {"text": _("A value does not fit its field."), "fix": _("Check lengths and number ranges.")}
    if isinstance(exc, OperationalError):
        return {"text": _("The database did not answer in time."),
                "fix": _("Retry shortly; if it persists, tell the ERP operators.")}
    return {"text": str(exc), "fix": ""}


def flash_error(exc: Exception) -> None:
    flash(error_message(exc), "error")


def flash_ok(text: str) -> None:
    flash({"text": str(text), "fix": ""}, "ok")


# ---- form input ---------------------------------------------------------------------------------

_FIELD_NAMES = {"partner_id": _l("customer or supplier"), "warehouse_id": _l("warehouse"), "product_id": _l("product"),
                "unit_price": _l("unit price"), "discount_percent": _l("discount %"), "paid_on": _l("payment date"),
                "supplier_reference": _l("supplier reference"), "exchange_rate": _l("exchange rate"),
                "quantity": _l("quantity"), "amount": _l("amount"), "currency": _l("currency"), "notes": _l("notes"),
                "method": _l("payment method"), "lines": _l("lines"), "username": _l("username"),
                "password": _l("password"), "code": _l("code"), "name": _l("name"), "email": _l("e-mail"),
                "address": _l("address"), "tax_id": _l("tax id"), "phone": _l("phone"),
                "payment_terms_days": _l("payment terms"), "sku": _l("SKU"), "unit": _l("unit"),
                "sale_price": _l("sale price"), "tax_code": _l("tax"), "full_name": _l("name"), "role": _l("role"),
                "reference": _l("reference"), "from_warehouse_id": _l("source warehouse"),
                "to_warehouse_id": _l("destination warehouse"), "counts": _l("counts"),
                "counted_quantity": _l("counted quantity"), "min_quantity": _l("from quantity"),
                "reorder_min": _l("reorder when below"), "reorder_quantity": _l("quantity to order"),
                "reorder_warehouse_id": _l("reorder warehouse")}


def describe_field(loc: str) -> str:
    """'lines.1.quantity' -> 'line 2, quantity'."""
    parts = loc.split(".")
    out = []
    i = 0
    while i < len(parts):
        p = parts[i]
        if p == "lines" and i + 1 < len(parts) and parts[i + 1].isdigit():
            out.append(_("line %(n)s", n=int(parts[i + 1]) + 1))
            i += 2
            continue
        out.append(str(_FIELD_NAMES.get(p, p.replace("_", " "))))
        i += 1
    return ", ".join(out)


def parse_form(model: type[BaseModel], data: dict):
    """Validate form data with the API's own request schema (one set of input rules)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = [{"field": ".".join(str(p) for p in e["loc"]), "problem": form_errors.problem(e)}
                  for e in exc.errors()]
        first = errors[0]
        raise ValidationFailed(f"{describe_field(first['field'])}: {first['problem']}", field=first["field"],
                               fix=_("Correct the field and save again."), errors=errors) from None


def form_id(value: str):
    """An id typed in a form (text) as the whole number the API's schema expects; anything else is
    passed on as it is, for the schema to refuse with its message."""
    value = (value or "").strip()
    return int(value) if value.isascii() and value.isdigit() and len(value) <= 10 else value


def int_arg(name: str, default: int | None = None, source=None) -> int | None:
    value = (source if source is not None else request.args).get(name, "").strip()
    if not value:
        return default
    try:
        n = int(value)
    except ValueError:
        return default
    return n if 0 <= n <= 2**31 - 1 else default


def safe_next(target: str | None) -> str | None:
    """Only same-site paths under /app/ (never another host) are followed after login. A target with
    control characters (CR/LF would split the Location header) is refused: 422 naming `next`."""
    if not target:
        return None
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in target):
        raise ValidationFailed("next holds control characters (such as CR or LF); it cannot be followed",
                               field="next", fix="Open the login page without a next= parameter, or with "
                                                 "a plain path such as /app/sales-orders.")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/app/") or target.startswith("//") \
            or "\\" in target:
        return None
    return target


# ---- the page decorator -------------------------------------------------------------------------

@dataclass(frozen=True)
class WebUser:
    """The logged-in user as plain values: usable after the transaction ended (error pages)."""
    id: int
    username: str
    full_name: str
    role: str
    locale: str | None = None


@dataclass
class Ctx:
    """What a page gets: the open session, the user, and messages to show after a commit."""
    s: Any
    user: Any
    messages: list = field(default_factory=list)

    def may(self, perm: str) -> bool:
        return permissions.has(self.user.role, perm)

    def flash(self, text: str) -> None:
        self.messages.append(({"text": str(text), "fix": ""}, "ok"))


def check_csrf() -> None:
    sent = request.form.get(CSRF_FIELD, "")
    expected = session.get(CSRF_KEY, "")
    if not sent or not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise CsrfRefused()


class CsrfRefused(HTTPException):
    code = 400
    description = _l("The form was not sent from this ERP's own page, or it has expired. "
                     "Reload the page and submit the form again.")


def to_login():
    nxt = request.full_path.rstrip("?") if request.method == "GET" else None
    return redirect(url_for("web.login", next=safe_next(nxt)) if safe_next(nxt) else url_for("web.login"))


def render_error(status: int, title: str, detail: str, fix: str = ""):
    return render_template("error.html", status=status, title=title, detail=detail, fix=fix), status


def forbidden(user, perm: str, what: str):
    return render_error(403, _("Permission denied"), _("Your role '%(role)s' may not %(what)s.",
                                                       role=term(user.role), what=what),
                        _("Ask an administrator for a role with the '%(perm)s' permission.", perm=perm))


def writable_or_raise(mode: dict) -> None:
    if mode["enabled"]:
        reason = mode.get("reason") or ""
        raise Maintenance(_("the ERP is read-only for maintenance%(reason)s; nothing was changed.",
                            reason=": " + reason if reason else ""), fix=_("Retry after the maintenance window."),
                          headers={"Retry-After": str(maintenance.retry_after(mode))})


def page(rule: str, perm: str, what: str, *, method: str = "GET", back: str | Callable | None = None,
         endpoint: str | None = None):
    """Register a page. `what` completes "Your role may not ..." on the 403 page. For a POST,
    `back` is the endpoint (given the same URL arguments) or a function of them that the user is
    sent back to when the action fails."""

    def wrap(fn: Callable):
        ep = endpoint or fn.__name__
        write = method == "POST"

        @functools.wraps(fn)
        def view(**kw):
            token = session.get(TOKEN_KEY)
            if not token:
                return to_login()
            for name, value in kw.items():
                if isinstance(value, int) and not 1 <= value <= 2**31 - 1:
                    return render_error(404, _("Not found"), _("There is no %(what)s %(id)s.",
                                                               what=name.replace("_id", ""), id=value),
                                        _("Pick it from the list."))
            if write:
                check_csrf()
            db = current_app.extensions["erp_db"]

            def once():
                with db.session(write=write) as s:
                    user = auth.resolve_token(s, token)
                    if user is None:
                        session.pop(TOKEN_KEY, None)
                        flash({"text": _("Your session has ended."), "fix": _("Log in again.")}, "error")
                        return to_login(), None
                    s.info["actor"] = user.username
                    if passwords.must_change(user) and ep not in FORCED_CHANGE_PAGES:
                        flash({"text": _("Your password was reset by an administrator."),
                               "fix": _("Choose a new password before anything else.")}, "error")
                        return redirect(url_for("web.account_password")), None
                    user = g.user = WebUser(user.id, user.username, user.full_name, user.role, user.locale)
                    i18n.refresh()
                    g.maintenance = maintenance.state(s)
                    if perm != ANY_USER and not permissions.has(user.role, perm):
                        return forbidden(user, perm, what), None
                    if write:
                        writable_or_raise(g.maintenance)
                    ctx = Ctx(s, user)
                    return fn(ctx, **kw), ctx

            try:
                resp, ctx = retrying(once)
                if ctx is None:
                    return resp
            except (ErpError, IntegrityError, DataError, OperationalError) as exc:
                if not write:
                    raise
                if not isinstance(exc, ErpError):
                    log.warning("web action %s failed: %s", ep, exc)
                flash_error(exc)
                target = back(**kw) if callable(back) else url_for(back or f"web.{ep}", **kw)
                return redirect(target, 303)
            for message, category in ctx.messages:
                flash(message, category)
            return resp

        web.add_url_rule(rule, ep, view, methods=[method])
        return view

    return wrap


# ---- error pages --------------------------------------------------------------------------------

@web.errorhandler(ErpError)
def _erp_error(exc: ErpError):
    m = error_message(exc)
    return render_error(exc.status, term(exc.title), m["text"], m["fix"])


@web.errorhandler(HTTPException)
def _http_error(exc: HTTPException):
    detail = exc.description if isinstance(exc, CsrfRefused) or i18n.current() == i18n.DEFAULT else None
    return render_error(exc.code or 500, term(exc.name), str(detail or term(exc.name)),
                        _("Go back to the dashboard and try again."))


@web.errorhandler(IntegrityError)
def _integrity(exc):
    log.warning("integrity error on a web page: %s", exc.orig)
    m = error_message(exc)
    return render_error(409, _("Conflict"), m["text"], m["fix"])


@web.errorhandler(OperationalError)
def _operational(exc):
    if is_transient(exc):
        return _erp_error(retry_later(exc))
    log.error("database unavailable: %s", exc.orig)
    m = error_message(exc)
    body, status = render_error(503, _("Database unavailable"), m["text"], m["fix"])
    return body, status, {"Retry-After": "5"}


@web.errorhandler(Exception)
def _unexpected(exc):
    log.exception("unexpected error on a web page")
    return render_error(500, _("Internal error"), _("An unexpected error occurred; it was logged."),
                        _("Retry; if it persists, tell the ERP operators the time it happened."))
