"""Multi-factor login on the web: the code page after the password, enrolment by QR code (right after
the password when the user's role requires it, or from My account), and the recovery codes.

Between the password and the code the session holds only a challenge (services/mfa.py), never the
token: every other page sends it back to the login. The QR code is an inline SVG (segno): the pages'
Content-Security-Policy allows no data: image and no inline style, and an inline <svg> with
presentation attributes needs neither. The secret is shown beside it as text for typing by hand."""

from __future__ import annotations

import secrets

import segno
from flask import current_app, flash, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from markupsafe import Markup

from ..errors import ErpError, NotAuthenticated
from ..models import User
from ..services import auth, mfa
from . import i18n
from .framework import ANY_USER, CSRF_KEY, TOKEN_KEY, check_csrf, error_message, page, safe_next, web

CHALLENGE_KEY = "mfa_challenge"
NEXT_KEY = "mfa_next"


def qr_svg(uri: str) -> Markup:
    """The otpauth:// URI as an inline SVG QR code (dark on white, a quiet zone of 4 modules)."""
    return Markup(segno.make(uri, error="m").svg_inline(scale=5, border=4, dark="#000", light="#fff",
                                                        svgclass="qr", omitsize=False))


def grouped(secret: str) -> str:
    return " ".join(secret[i:i + 4] for i in range(0, len(secret), 4))


def to_second_step(step: tuple[str, str], nxt: str | None):
    """After the password (web/home.py): keep the challenge in the fresh session and go to the code
    page, or to enrolment when the role requires MFA and none is set up."""
    purpose, challenge = step
    session[CHALLENGE_KEY] = challenge
    if nxt:
        session[NEXT_KEY] = nxt
    session[CSRF_KEY] = secrets.token_urlsafe(32)
    return redirect(url_for("web.mfa_code" if purpose == "code" else "web.mfa_enrol_first"), 303)


def _settings():
    return current_app.config["ERP_SETTINGS"]


def _throttle_args() -> dict:
    cfg = _settings()
    return {"max_failures": cfg.login_max_failures, "window_seconds": cfg.login_window_seconds}


def _logged_in(token: str, lang: str | None):
    """The session after the second step: authenticated, a fresh CSRF token, the language kept."""
    nxt = safe_next(session.get(NEXT_KEY))
    session.clear()
    if lang:
        session[i18n.LANG_KEY] = lang
    session[TOKEN_KEY] = token
    session[CSRF_KEY] = secrets.token_urlsafe(32)
    return nxt or url_for("web.dashboard")


def _start_over(exc: ErpError):
    """The challenge is gone (expired, used): back to the login with the reason."""
    lang = session.get(i18n.LANG_KEY)
    session.clear()
    if lang:
        session[i18n.LANG_KEY] = lang
    flash({"text": _("The login's second step has expired."), "fix": _("Log in again with your password.")}, "error")
    return redirect(url_for("web.login"), 303)


def _gone(exc: ErpError) -> bool:
    return isinstance(exc, NotAuthenticated) and exc.field != "code"


def _in_page_language(exc: ErpError) -> ErpError:
    """A wrong code's refusal in the page's language (the service's own text is English)."""
    if isinstance(exc, NotAuthenticated) and exc.field == "code":
        return NotAuthenticated(_("The one-time code is wrong, expired or already used."), field="code",
                                fix=_("Enter the current code of the authenticator app, or an unused recovery code."))
    return exc


@web.route("/app/login/code", methods=["GET", "POST"])
def mfa_code():
    """The second step: a code of the authenticator app, or a recovery code."""
    if not session.get(CHALLENGE_KEY):
        return redirect(url_for("web.login"))
    if request.method == "GET":
        return render_template("mfa_code.html", error=None)
    check_csrf()
    db = current_app.extensions["erp_db"]
    try:
        with db.session() as s:  # allowed in maintenance, as the login is
            ch, user = mfa.open_challenge(s, session.get(CHALLENGE_KEY), "code")
            kind = mfa.check_code(s, user, request.form.get("code", ""), request.remote_addr or "",
                                  **_throttle_args())
            mfa.close_challenge(s, ch)
            token, _expires = auth.issue_token(s, user, request.remote_addr or "",
                                               ttl_seconds=_settings().token_ttl_seconds,
                                               user_agent=request.headers.get("User-Agent", ""), audit_after={"factor": kind})
            lang = user.locale or session.get(i18n.LANG_KEY)
    except ErpError as exc:
        if _gone(exc):
            return _start_over(exc)
        return render_template("mfa_code.html", error=error_message(_in_page_language(exc))), exc.status, exc.headers
    return redirect(_logged_in(token, lang), 303)


@web.route("/app/login/enrol", methods=["GET", "POST"])
def mfa_enrol_first():
    """Enrolment right after the password, for a role that requires MFA: nothing else until done."""
    if not session.get(CHALLENGE_KEY):
        return redirect(url_for("web.login"))
    if request.method == "POST":
        check_csrf()
    db = current_app.extensions["erp_db"]
    try:
        with db.session() as s:
            ch, user = mfa.open_challenge(s, session.get(CHALLENGE_KEY), "enrol")
            secret = mfa.begin_enrolment(s, user)
            if request.method == "GET":
                return _enrol_page(secret, user.username, url_for("web.mfa_enrol_first"), first=True)
            codes = mfa.confirm_enrolment(s, user, request.form.get("code", ""), request.remote_addr or "",
                                          **_throttle_args())
            mfa.close_challenge(s, ch)
            token, _expires = auth.issue_token(s, user, request.remote_addr or "",
                                               ttl_seconds=_settings().token_ttl_seconds,
                                               user_agent=request.headers.get("User-Agent", ""),
                                               audit_after={"factor": "enrolment"})
            lang = user.locale or session.get(i18n.LANG_KEY)
    except ErpError as exc:
        if _gone(exc):
            return _start_over(exc)
        with db.session(write=False) as s:
            ch, user = mfa.open_challenge(s, session.get(CHALLENGE_KEY), "enrol")
            secret = mfa.pending_secret(s, user.id)
        return _enrol_page(secret, user.username, url_for("web.mfa_enrol_first"), first=True,
                           error=error_message(_in_page_language(exc))), exc.status, exc.headers
    target = _logged_in(token, lang)
    return render_template("mfa_codes.html", codes=codes, continue_to=target, enrolled=True)


def _enrol_page(secret: str, username: str, action: str, *, first: bool, error=None):
    return render_template("mfa_enrol.html", qr=qr_svg(mfa.provisioning_uri(secret, username)),
                           secret=grouped(secret), action=action, first=first, error=error)


# ---- My account: set up, recovery codes ---------------------------------------------------------------

@page("/app/account/mfa", ANY_USER, _l("see your multi-factor login"))
def account_mfa(ctx):
    status = mfa.status(ctx.s, ctx.user.id)
    pending = None if status["enrolled"] else mfa.pending_secret(ctx.s, ctx.user.id)
    if pending:
        return _enrol_page(pending, ctx.user.username, url_for("web.account_mfa_confirm"), first=False)
    required = ctx.user.role in _settings().mfa_roles
    return render_template("account_mfa.html", status=status, required=required)


@page("/app/account/mfa/start", ANY_USER, _l("set up multi-factor login"), method="POST", back="web.account_mfa")
def account_mfa_start(ctx):
    mfa.begin_enrolment(ctx.s, ctx.s.get(User, ctx.user.id))
    return redirect(url_for("web.account_mfa"), 303)


@page("/app/account/mfa/confirm", ANY_USER, _l("set up multi-factor login"), method="POST", back="web.account_mfa")
def account_mfa_confirm(ctx):
    try:
        codes = mfa.confirm_enrolment(ctx.s, ctx.s.get(User, ctx.user.id), request.form.get("code", ""),
                                      request.remote_addr or "", **_throttle_args())
    except NotAuthenticated as exc:
        raise _in_page_language(exc) from None
    return render_template("mfa_codes.html", codes=codes, continue_to=url_for("web.account_mfa"), enrolled=True)


@page("/app/account/mfa/recovery-codes", ANY_USER, _l("make new recovery codes"), method="POST",
      back="web.account_mfa")
def account_mfa_recovery_codes(ctx):
    codes = mfa.regenerate_recovery_codes(ctx.s, ctx.s.get(User, ctx.user.id))
    return render_template("mfa_codes.html", codes=codes, continue_to=url_for("web.account_mfa"), enrolled=False)
