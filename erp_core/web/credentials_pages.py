"""Passwords and sessions on the web: change my password (required after an administrator's reset),
my sessions (end one, log out everywhere), and for administrators the users with a password reset."""

from __future__ import annotations

from flask import redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from sqlalchemy.orm import undefer_group

from ..domain.permissions import ROLES
from ..errors import ValidationFailed
from ..models import LoginAttempt, User
from ..models.base import ADDED_LATER_IN_1_1
from ..services import passwords, sessions
from .framework import ANY_USER, TOKEN_KEY, page


def _rule_message(exc: ValidationFailed) -> ValidationFailed:
    """The password policy's refusal in the page's language (the services speak English)."""
    rule = exc.extra.get("rule")
    texts = {
        "min_length": (_("The password is shorter than %(n)s characters.", n=passwords.MIN_LENGTH),
                       _("Choose at least %(n)s characters; a few unrelated words are easy to remember.",
                         n=passwords.MIN_LENGTH)),
        "max_length": (_("The password is longer than %(n)s characters.", n=passwords.MAX_LENGTH),
                       _("Choose a shorter password.")),
        "not_username": (_("The password is the username."), _("Choose a password that is not your username.")),
        "not_common": (_("The password is on the list of common passwords that attackers try first."),
                       _("Choose a password of your own, not a well-known one.")),
    }
    if exc.field == "current_password":
        return ValidationFailed(_("The current password is wrong."), field=exc.field,
                                fix=_("Type the password you logged in with."))
    if rule in texts:
        return ValidationFailed(texts[rule][0], field="password", fix=texts[rule][1], rule=rule)
    if "same as the current" in exc.detail:
        return ValidationFailed(_("The new password is the same as the current one."), field="password",
                                fix=_("Choose a new password."))
    return exc


@page("/app/account/password", ANY_USER, _l("change your password"))
def account_password(ctx):
    forced = passwords.must_change(ctx.s.get(User, ctx.user.id))
    return render_template("password.html", forced=forced, min_length=passwords.MIN_LENGTH)


@page("/app/account/password", ANY_USER, _l("change your password"), method="POST", back="web.account_password",
      endpoint="account_password_save")
def account_password_save(ctx):
    """Change the password (the current one required); the user's other sessions end."""
    new = request.form.get("new_password", "")
    if new != request.form.get("new_password_again", ""):
        raise ValidationFailed(_("The two new passwords differ."), field="password",
                               fix=_("Type the same new password twice."))
    try:
        ended = passwords.change(ctx.s, ctx.user.id, request.form.get("current_password", ""), new,
                                 keep_token=session.get(TOKEN_KEY), remote_addr=request.remote_addr or "")
    except ValidationFailed as exc:
        raise _rule_message(exc) from None
    ctx.flash(_("Password changed; %(n)s other session(s) ended.", n=ended))
    return redirect(url_for("web.account"), 303)


@page("/app/account/sessions", ANY_USER, _l("see your sessions"))
def account_sessions(ctx):
    rows = sessions.list_for(ctx.s, ctx.user.id, session.get(TOKEN_KEY))
    return render_template("sessions.html", rows=rows)


@page("/app/account/sessions/<int:session_id>/end", ANY_USER, _l("end a session"), method="POST",
      back=lambda **_kw: url_for("web.account_sessions"))
def account_session_end(ctx, session_id):
    sessions.end_one(ctx.s, ctx.user.id, session_id)
    ctx.flash(_("Session ended."))
    return redirect(url_for("web.account_sessions"), 303)


@page("/app/account/logout-everywhere", ANY_USER, _l("log out everywhere"), method="POST",
      back="web.account_sessions")
def account_logout_everywhere(ctx):
    """End every session of the user, this one too."""
    sessions.end_all(ctx.s, ctx.user.id)
    session.pop(TOKEN_KEY, None)
    ctx.flash(_("You are logged out everywhere."))
    return redirect(url_for("web.login"), 303)


@page("/app/users", "users.read", _l("see the users"))
def users_list(ctx):
    rows = ctx.s.scalars(select(User).order_by(User.username).options(undefer_group(ADDED_LATER_IN_1_1))).all()
    return render_template("users.html", rows=rows, last_login=_last_logins(ctx.s), roles=list(ROLES))


def _last_logins(s) -> dict:
    from sqlalchemy import func

    return dict(s.execute(select(LoginAttempt.username, func.max(LoginAttempt.at))
                          .where(LoginAttempt.succeeded.is_(True)).group_by(LoginAttempt.username)).all())


@page("/app/users/<int:user_id>/reset-password", "users.write", _l("reset a user's password"), method="POST",
      back=lambda **_kw: url_for("web.users_list"))
def user_reset_password(ctx, user_id):
    """A temporary password, shown once; the user must change it at the next login."""
    user = ctx.s.get(User, user_id)
    if user is None:
        raise ValidationFailed(_("There is no user %(id)s.", id=user_id), field="user",
                               fix=_("Pick the user from the list."))
    temporary, ended = passwords.reset(ctx.s, user.username)
    return render_template("password_reset.html", username=user.username, temporary=temporary, ended=ended)
