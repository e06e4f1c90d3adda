"""Login, logout, the current user, and user administration."""

from flask import current_app, request
from sqlalchemy import select

from ..models import User
from ..services import auth, passwords
from . import mfa
from . import schemas as S
from .framework import ANY_USER, bearer_token, operation, paginate


@operation("/auth/login", "POST", summary="Log in and get a bearer token", tag="auth", perm=None,
           body=S.LoginIn, response=S.TokenOut, writes_in_maintenance=True)
def login(ctx):
    """A user whose login needs a second factor gets 401 with a challenge (api/mfa.py), no token."""
    cfg = current_app.config["ERP_SETTINGS"]
    _none, user, _when = auth.login(ctx.s, ctx.body.username, ctx.body.password, request.remote_addr or "",
                                    ttl_seconds=cfg.token_ttl_seconds, max_failures=cfg.login_max_failures,
                                    window_seconds=cfg.login_window_seconds, issue=False)
    mfa.second_step_or_raise(ctx.s, user, cfg)
    token, expires = auth.issue_token(ctx.s, user, request.remote_addr or "", ttl_seconds=cfg.token_ttl_seconds,
                                      user_agent=request.headers.get("User-Agent", ""))
    return {"token": token, "expires_at": expires, "username": user.username, "role": user.role,
            "must_change_password": passwords.must_change(user)}


@operation("/auth/logout", "POST", summary="Revoke the bearer token", tag="auth", perm=ANY_USER,
           writes_in_maintenance=True, status=204)
def logout(ctx):
    auth.logout(ctx.s, bearer_token())


@operation("/me", summary="Who am I", tag="auth", perm=ANY_USER, response=S.UserOut)
def me(ctx):
    return ctx.user


@operation("/users", summary="List users", tag="users", perm="users.read", query=S.PageQuery,
           response=S.Page[S.UserOut])
def list_users(ctx):
    return paginate(ctx, select(User).order_by(User.id))


@operation("/users", "POST", summary="Create a user", tag="users", perm="users.write", body=S.UserIn,
           response=S.UserOut, status=201)
def create_user(ctx):
    b = ctx.body
    return auth.add_user(ctx.s, b.username, b.password, b.role, b.full_name)


@operation("/users/<int:user_id>", "PATCH", summary="Change a user's role or deactivate them", tag="users",
           perm="users.write", body=S.UserPatch, response=S.UserOut)
def patch_user(ctx, user_id):
    return auth.change_user(ctx.s, user_id, ctx.body.model_dump(exclude_unset=True))

