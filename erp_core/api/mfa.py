"""The API's second login step. POST /auth/login with the password of a user who has multi-factor login
answers 401 'Second factor required' with a challenge (valid CHALLENGE_SECONDS, once) and no token;
POST /auth/login/code with the challenge and a code (TOTP or recovery code) gives the token. A user
whose role requires MFA and who has not set it up gets 403: enrolment is on the web pages."""

from __future__ import annotations

import datetime as dt

from flask import current_app, request

from ..errors import MfaEnrolmentRequired, SecondFactorRequired
from ..models.base import utcnow
from ..services import auth, passwords
from ..services import mfa as service
from . import schemas as S
from .framework import operation


def second_step_or_raise(s, user, cfg) -> None:
    """Nothing when the password is enough; else the refusal that says what comes next (the challenge
    committed first: the refusal rolls the request's transaction back)."""
    step = service.after_password(s, user, cfg.mfa_roles)
    if step is None:
        return
    purpose, challenge = step
    if purpose == "enrol":
        raise MfaEnrolmentRequired(
            f"user {user.username!r} has the role '{user.role}', which must log in with a second factor, "
            "and has not set one up.",
            fix="Log in on the web pages (/app/login): they lead through setting up an authenticator app; "
                "then log in here with the password and a code.")
    expires = utcnow() + dt.timedelta(seconds=service.CHALLENGE_SECONDS)
    s.commit()  # the challenge (and the password's attempt) must outlive the refusal
    raise SecondFactorRequired(
        "the password is right; a one-time code is needed too.",
        fix="POST /api/v1/auth/login/code with {\"challenge\": ..., \"code\": ...}: the current code of the "
            "authenticator app, or an unused recovery code, within the challenge's time.",
        challenge=challenge, challenge_expires_at=expires.isoformat())


@operation("/auth/login/code", "POST", summary="Finish a login with a one-time code and get a bearer token",
           tag="auth", perm=None, body=S.LoginCodeIn, response=S.TokenOut, writes_in_maintenance=True)
def login_code(ctx):
    cfg = current_app.config["ERP_SETTINGS"]
    ch, user = service.open_challenge(ctx.s, ctx.body.challenge, "code")
    kind = service.check_code(ctx.s, user, ctx.body.code, request.remote_addr or "",
                              max_failures=cfg.login_max_failures, window_seconds=cfg.login_window_seconds)
    service.close_challenge(ctx.s, ch)
    token, expires = auth.issue_token(ctx.s, user, request.remote_addr or "", ttl_seconds=cfg.token_ttl_seconds,
                                      user_agent=request.headers.get("User-Agent", ""), audit_after={"factor": kind})
    return {"token": token, "expires_at": expires, "username": user.username, "role": user.role,
            "must_change_password": passwords.must_change(user)}
