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
from decimal import Decimal
from typing import Any, Callable
from urllib.parse import urlsplit

from flask import (Blueprint, current_app, flash, g, redirect, render_template, request, session,
                   url_for)
from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import DataError, IntegrityError, OperationalError
from werkzeug.exceptions import HTTPException

from ..domain import permissions
from ..errors import ErpError, Maintenance, ValidationFailed
from ..services import auth, maintenance

log = logging.getLogger("erp_core.web")

web = Blueprint("web", __name__, template_folder="templates")

ANY_USER = "authenticated"
TOKEN_KEY = "token"
CSRF_KEY = "csrf"
CSRF_FIELD = "csrf_token"
PAGE_SIZE = 50


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


@web.before_request
def _nonce() -> None:
    g.csp_nonce = secrets.token_urlsafe(16)


@web.after_request
def _security_headers(resp):
    nonce = g.get("csp_nonce", "")
    resp.headers.setdefault(
        "Content-Security-Policy",
        f"default-src 'none'; style-src 'nonce-{nonce}'; img-src 'self'; form-action 'self'; "
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
            "maintenance_mode": g.get("maintenance"), "csp_nonce": g.get("csp_nonce", "")}


def _decimal(value) -> Decimal | None:
    if value is None or value == "":
        return None
    return value if isinstance(value, Decimal) else Decimal(str(value))


@web.app_template_filter("money")
def money(value) -> str:
    d = _decimal(value)
    return "" if d is None else f"{d:,.2f}"


@web.app_template_filter("qty")
def qty(value) -> str:
    """Quantities without trailing zeros: 3, 2.5, 0.125."""
    d = _decimal(value)
    if d is None:
        return ""
    text = f"{d:,.3f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


@web.app_template_filter("pct")
def pct(value) -> str:
    d = _decimal(value)
    if d is None:
        return ""
    text = f"{d:.2f}".rstrip("0").rstrip(".")
    return f"{text} %"


# ---- messages -----------------------------------------------------------------------------------

def error_message(exc: Exception) -> dict:
    """What the user reads for a failed action: what is wrong and how to fix it."""
    if isinstance(exc, ErpError):
        return {"text": exc.detail[:1].upper() + exc.detail[1:], "fix": exc.fix or ""}
    if isinstance(exc, IntegrityError):
        return {"text": "The change conflicts with data stored meanwhile.", "fix": "Reload the page and retry."}
    if isinstance(exc, DataError):
        return {"text": "A value does not fit its field.", "fix": "Check lengths and number ranges."}
    if isinstance(exc, OperationalError):
        return {"text": "The database did not answer in time.",
                "fix": "Retry shortly; if it persists, tell the ERP operators."}
    return {"text": str(exc), "fix": ""}


def flash_error(exc: Exception) -> None:
    flash(error_message(exc), "error")


def flash_ok(text: str) -> None:
    flash({"text": text, "fix": ""}, "ok")


# ---- form input ---------------------------------------------------------------------------------

_FIELD_NAMES = {"partner_id": "customer or supplier", "warehouse_id": "warehouse", "product_id": "product",
                "unit_price": "unit price", "discount_percent": "discount %", "paid_on": "payment date",
                "supplier_reference": "supplier reference", "exchange_rate": "exchange rate"}


def describe_field(loc: str) -> str:
    """'lines.1.quantity' -> 'line 2, quantity'."""
    parts = loc.split(".")
    out = []
    i = 0
    while i < len(parts):
        p = parts[i]
        if p == "lines" and i + 1 < len(parts) and parts[i + 1].isdigit():
            out.append(f"line {int(parts[i + 1]) + 1}")
            i += 2
            continue
        out.append(_FIELD_NAMES.get(p, p.replace("_", " ")))
        i += 1
    return ", ".join(out)


def parse_form(model: type[BaseModel], data: dict):
    """Validate form data with the API's own request schema (one set of input rules)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = [{"field": ".".join(str(p) for p in e["loc"]), "problem": e["msg"].removeprefix("Value error, ")}
                  for e in exc.errors()]
        first = errors[0]
        raise ValidationFailed(f"{describe_field(first['field'])}: {first['problem']}", field=first["field"],
                               fix="Correct the field and save again.", errors=errors) from None


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
    """Only same-site paths under /app/ (never another host) are followed after login."""
    if not target:
        return None
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


@dataclass
class Ctx:
    """What a page gets: the open session, the user, and messages to show after a commit."""
    s: Any
    user: Any
    messages: list = field(default_factory=list)

    def may(self, perm: str) -> bool:
        return permissions.has(self.user.role, perm)

    def flash(self, text: str) -> None:
        self.messages.append(({"text": text, "fix": ""}, "ok"))


def check_csrf() -> None:
    sent = request.form.get(CSRF_FIELD, "")
    expected = session.get(CSRF_KEY, "")
    if not sent or not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise CsrfRefused()


class CsrfRefused(HTTPException):
    code = 400
    description = ("The form was not sent from this ERP's own page, or it has expired. "
                   "Reload the page and submit the form again.")


def to_login():
    nxt = request.full_path.rstrip("?") if request.method == "GET" else None
    return redirect(url_for("web.login", next=safe_next(nxt)) if safe_next(nxt) else url_for("web.login"))


def render_error(status: int, title: str, detail: str, fix: str = ""):
    return render_template("error.html", status=status, title=title, detail=detail, fix=fix), status


def forbidden(user, perm: str, what: str):
    return render_error(403, "Permission denied", f"Your role '{user.role}' may not {what}.",
                        f"Ask an administrator for a role with the '{perm}' permission.")


def writable_or_raise(mode: dict) -> None:
    if mode["enabled"]:
        reason = mode.get("reason") or ""
        raise Maintenance(f"the ERP is read-only for maintenance{': ' + reason if reason else ''}; "
                          "nothing was changed.", fix="Retry after the maintenance window.",
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
                    return render_error(404, "Not found", f"There is no {name.replace('_id', '')} {value}.",
                                        "Pick it from the list.")
            if write:
                check_csrf()
            db = current_app.extensions["erp_db"]
            ctx = None
            try:
                with db.session(write=write) as s:
                    user = auth.resolve_token(s, token)
                    if user is None:
                        session.pop(TOKEN_KEY, None)
                        flash({"text": "Your session has ended.", "fix": "Log in again."}, "error")
                        return to_login()
                    s.info["actor"] = user.username
                    user = g.user = WebUser(user.id, user.username, user.full_name, user.role)
                    g.maintenance = maintenance.state(s)
                    if perm != ANY_USER and not permissions.has(user.role, perm):
                        return forbidden(user, perm, what)
                    if write:
                        writable_or_raise(g.maintenance)
                    ctx = Ctx(s, user)
                    resp = fn(ctx, **kw)
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
    return render_error(exc.status, exc.title, error_message(exc)["text"], exc.fix or "")


@web.errorhandler(HTTPException)
def _http_error(exc: HTTPException):
    return render_error(exc.code or 500, exc.name, exc.description or exc.name,
                        "Go back to the dashboard and try again.")


@web.errorhandler(IntegrityError)
def _integrity(exc):
    log.warning("integrity error on a web page: %s", exc.orig)
    m = error_message(exc)
    return render_error(409, "Conflict", m["text"], m["fix"])


@web.errorhandler(OperationalError)
def _operational(exc):
    log.error("database unavailable: %s", exc.orig)
    m = error_message(exc)
    body, status = render_error(503, "Database unavailable", m["text"], m["fix"])
    return body, status, {"Retry-After": "5"}


@web.errorhandler(Exception)
def _unexpected(exc):
    log.exception("unexpected error on a web page")
    return render_error(500, "Internal error", "An unexpected error occurred; it was logged.",
                        "Retry; if it persists, tell the ERP operators the time it happened.")
