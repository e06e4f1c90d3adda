"""Login, logout, the current user, and user administration."""

from flask import current_app, request
from sqlalchemy import select

from ..models import User
from ..services import auth
from . import schemas as S
from ..services.common import get_or_404
from .framework import ANY_USER, bearer_token, operation, paginate


@operation("/auth/login", "POST", summary="Log in and get a bearer token", tag="auth", perm=None,
           body=S.LoginIn, response=S.TokenOut, writes_in_maintenance=True)
def login(ctx):
    cfg = current_app.config["ERP_SETTINGS"]
    token, user, expires = auth.login(ctx.s, ctx.body.username, ctx.body.password, request.remote_addr or "",
                                      ttl_seconds=cfg.token_ttl_seconds, max_failures=cfg.login_max_failures,
                                      window_seconds=cfg.login_window_seconds)
    return {"token": token, "expires_at": expires, "username": user.username, "role": user.role}


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
    user = get_or_404(ctx.s, User, user_id, "user")
    for k, v in ctx.body.model_dump(exclude_unset=True).items():
        setattr(user, k, v)
    ctx.s.flush()
    return user

