"""The logged-in user's password and sessions, and an administrator's password reset."""

from __future__ import annotations

import datetime as dt

from flask import request
from sqlalchemy import select

from ..errors import NotFound
from ..models import User
from ..services import passwords, sessions
from .framework import ANY_USER, bearer_token, operation
from .schemas import In, Out, Text


class PasswordChangeIn(In):
    current_password: Text(256, 1)
    new_password: Text(256, 1)


class PasswordChangeOut(Out):
    sessions_ended: int


class SessionOut(Out):
    id: int
    created_at: dt.datetime
    last_seen_at: dt.datetime
    expires_at: dt.datetime
    remote_addr: str
    user_agent: str
    current: bool


class SessionList(Out):
    items: list[SessionOut]


class SessionsEndedOut(Out):
    sessions_ended: int


class PasswordResetOut(Out):
    username: str
    temporary_password: str
    sessions_ended: int


@operation("/me/password", "POST", summary="Change my password (the current one required)", tag="auth",
           perm=ANY_USER, body=PasswordChangeIn, response=PasswordChangeOut)
def change_password(ctx):
    """422 naming the broken rule (min_length, not_username, not_common); the other sessions and tokens end."""
    ended = passwords.change(ctx.s, ctx.user.id, ctx.body.current_password, ctx.body.new_password,
                             keep_token=bearer_token(), remote_addr=request.remote_addr or "")
    return {"sessions_ended": ended}


@operation("/me/sessions", summary="List my open sessions", tag="auth", perm=ANY_USER, response=SessionList)
def my_sessions(ctx):
    return {"items": sessions.list_for(ctx.s, ctx.user.id, bearer_token())}


@operation("/me/sessions/<int:session_id>", "DELETE", summary="End one of my sessions", tag="auth", perm=ANY_USER,
           status=204)
def end_session(ctx, session_id):
    sessions.end_one(ctx.s, ctx.user.id, session_id)


@operation("/me/logout-everywhere", "POST", summary="End all my sessions, this one too", tag="auth",
           perm=ANY_USER, response=SessionsEndedOut, writes_in_maintenance=True)
def logout_everywhere(ctx):
    return {"sessions_ended": sessions.end_all(ctx.s, ctx.user.id)}


@operation("/users/<int:user_id>/password-reset", "POST", summary="Reset a user's password", tag="users",
           perm="users.write", response=PasswordResetOut)
def reset_password(ctx, user_id):
    """A temporary password the user must change at the next login; the user's sessions end."""
    username = ctx.s.scalar(select(User.username).where(User.id == user_id))
    if username is None:
        raise NotFound(f"no user with id {user_id}.", fix="Use an id from GET /api/v1/users.")
    temporary, ended = passwords.reset(ctx.s, username)
    return {"username": username, "temporary_password": temporary, "sessions_ended": ended}
