"""User administration for administrators: create a user (with a temporary password shown once, to
be changed at the first login), change a user's role, deactivate or reactivate a user. The guards of
services.auth hold here as in the API: never the last active administrator, never a service user of
the operators' tools (their refusals are shown in the page's language)."""

from __future__ import annotations

import secrets

from flask import redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from ..api import schemas as S
from ..domain.permissions import ROLES
from ..errors import Conflict, ErpError, PermissionDenied
from ..models import User
from ..services import auth, passwords
from ..services.common import get_or_404
from .framework import error_message, page, parse_form
from .masterdata_pages import _text, field_errors
from .terms import term

USER_TEXT = ("username", "full_name", "role")


def _user_page(raw: dict, error=None, errors=None, status: int = 200):
    return render_template("user_form.html", form=raw, roles=list(ROLES), error=error, errors=errors or {}), status


@page("/app/users/new", "users.write", _l("add users"))
def user_new(ctx):
    return _user_page({"username": "", "full_name": "", "role": "sales"})


@page("/app/users/new", "users.write", _l("add users"), method="POST", endpoint="user_create", back="web.user_new")
def user_create(ctx):
    raw = _text(request.form, USER_TEXT)
    temporary = secrets.token_urlsafe(passwords.TEMPORARY_LENGTH)[:passwords.TEMPORARY_LENGTH]
    try:
        body = parse_form(S.UserIn, {"username": raw["username"], "full_name": raw["full_name"],
                                     "role": raw["role"], "password": temporary})
        with ctx.s.begin_nested():
            user = auth.add_user(ctx.s, body.username, temporary, body.role, body.full_name)
            user.must_change_password = True
    except ErpError as exc:
        if isinstance(exc, Conflict) and exc.field == "username":
            exc = Conflict(_("There is already a user %(name)s.", name=raw["username"]), field="username",
                           fix=_("Choose another username."))
        return _user_page(raw, error_message(exc), field_errors(exc), exc.status)
    return render_template("password_reset.html", username=user.username, temporary=temporary, ended=0, created=True)


def _guarded(ctx, user_id: int, changes: dict) -> User:
    """services.auth.change_user, its refusals in the page's language."""
    try:
        with ctx.s.begin_nested():
            return auth.change_user(ctx.s, user_id, changes)
    except PermissionDenied as exc:
        raise PermissionDenied(_("%(name)s is a service user of the operators' tools; it is not changed here.",
                                 name=ctx.s.get(User, user_id).username),
                               fix=_("Leave it as it is: the operators' tools manage their own users.")) from exc
    except Conflict as exc:
        raise Conflict(_("%(name)s is the last active administrator; without one nobody could manage users.",
                         name=ctx.s.get(User, user_id).username), field=exc.field,
                       fix=_("Make another user an active administrator first.")) from exc


@page("/app/users/<int:user_id>/role", "users.write", _l("change users"), method="POST", back="web.users_list",
      endpoint="user_role")
def user_role(ctx, user_id):
    get_or_404(ctx.s, User, user_id, "user")
    body = parse_form(S.UserPatch, {"role": request.form.get("role", "")[:32]})
    user = _guarded(ctx, user_id, body.model_dump(exclude_unset=True))
    ctx.flash(_("%(name)s is now %(role)s.", name=user.username, role=term(user.role)))
    return redirect(url_for("web.users_list"), 303)


@page("/app/users/<int:user_id>/active", "users.write", _l("change users"), method="POST", back="web.users_list",
      endpoint="user_active")
def user_active(ctx, user_id):
    get_or_404(ctx.s, User, user_id, "user")
    active = request.form.get("active") == "1"
    user = _guarded(ctx, user_id, {"active": active})
    if not active:
        auth.deactivate(ctx.s, user.username)  # its sessions and tokens end too
    ctx.flash(_("%(name)s may log in again.", name=user.username) if active
              else _("%(name)s is deactivated: the user can no longer log in.", name=user.username))
    return redirect(url_for("web.users_list"), 303)
