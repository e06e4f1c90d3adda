"""My account: who is logged in, with which role, and the language of the pages (stored on the user)."""

from __future__ import annotations

import dataclasses

from flask import g, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from ..errors import ValidationFailed
from ..models import User
from . import i18n
from .framework import ANY_USER, page, safe_next


@page("/app/account", ANY_USER, _l("see your account"))
def account(ctx):
    return render_template("account.html", preferred=ctx.s.get(User, ctx.user.id).locale or "")


@page("/app/account/language", ANY_USER, _l("change your language"), method="POST", back="web.account")
def account_language(ctx):
    """Store the language on the user (empty: follow the browser), then go back to the page shown."""
    value = request.form.get("locale", "").strip()
    if value and value not in i18n.LOCALES:
        raise ValidationFailed(_("“%(value)s” is not a language of this ERP", value=value[:20]), field="locale",
                               fix=_("Pick one from the list."))
    ctx.s.get(User, ctx.user.id).locale = value or None
    session.pop(i18n.LANG_KEY, None)
    if value:
        session[i18n.LANG_KEY] = value
    g.user = dataclasses.replace(g.user, locale=value or None)
    i18n.refresh()
    ctx.flash(_("Language saved."))
    return redirect(safe_next(request.form.get("next")) or url_for("web.account"), 303)
