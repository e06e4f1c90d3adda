"""One decorator per API operation: authentication, permission, validation, transaction,
maintenance and idempotency in one place, and the OpenAPI document built from the same schemas."""

from __future__ import annotations

import functools
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from flask import Blueprint, current_app, g, jsonify, request
from pydantic import BaseModel, ValidationError
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from ..db import retrying
from ..domain import permissions
from ..errors import (Conflict, MalformedRequest, Maintenance, NotAuthenticated, NotFound, PermissionDenied,
                      ValidationFailed)
from ..models import IdempotencyRecord
from ..services import auth, maintenance, passwords
from .schemas import MAX_ID, Page

api = Blueprint("api", __name__, url_prefix="/api/v1")
ANY_USER = "authenticated"  # a permission every logged-in role has
IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,128}")  # documented in openapi.py
OPERATIONS: list["Operation"] = []
# what a user whose password was reset may do before changing it (services.passwords)
FORCED_CHANGE_ALLOWS = {"auth_logout", "auth_me", "auth_change_password"}


@dataclass
class Operation:
    rule: str
    method: str
    summary: str
    tag: str
    perm: str | None
    body: type[BaseModel] | None
    query: type[BaseModel] | None
    response: Any
    status: int
    idempotent: bool
    endpoint: str
    writes_in_maintenance: bool = False
    path_params: list[str] = field(default_factory=list)
    location: str | None = None


@dataclass
class Ctx:
    """What a handler gets: the session, the user, the parsed body and query."""
    s: Any
    user: Any
    body: Any
    query: Any

    def may(self, perm: str) -> bool:
        return self.user is not None and permissions.has(self.user.role, perm)


def _validation_problem(exc: ValidationError, where: str) -> ValidationFailed:
    errors = [{"field": ".".join(str(p) for p in e["loc"]) or where, "problem": e["msg"]} for e in exc.errors()]
    first = errors[0]
    return ValidationFailed(f"{where} field '{first['field']}': {first['problem']}", field=first["field"],
                            fix="Correct the listed fields; see /api/v1/openapi.json for the schema.",
                            errors=errors)


def parse(model: type[BaseModel], data, where: str, strict: bool = False):
    """Strict for JSON bodies (true is not 1, 5 is not "5"); query strings are text and read leniently."""
    try:
        return model.model_validate(data, strict=strict)
    except ValidationError as exc:
        raise _validation_problem(exc, where) from None


def _json_body():
    """The request's JSON: a body that is not JSON at all (another content type, or malformed) is a 400;
    well-formed JSON the ERP will not read (a number of thousands of digits, nesting thousands deep) a 422."""
    if not request.data:
        return {}
    if not request.is_json:
        raise MalformedRequest("request body must be JSON", field="body",
                               fix="Send 'Content-Type: application/json' with a JSON object.")
    try:
        return json.loads(request.data)
    except RecursionError:  # the decoder recurses per level of nesting
        raise ValidationFailed("request body is nested too deeply", field="body",
                               fix="Send the documented object; no request needs more than a few levels.") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise MalformedRequest("request body is not valid JSON", field="body",
                               fix="Send a valid JSON object.") from None
    except ValueError as exc:  # well-formed, but past what Python reads (integers beyond 4300 digits)
        raise ValidationFailed(f"request body holds a value that cannot be read: {str(exc)[:120]}", field="body",
                               fix="Send numbers as the schema documents them (amounts as strings).") from None


def _location(op: "Operation", out) -> str | None:
    """Where a created resource is read: the operation's `location` (a rule such as /invoices/{id}) filled
    with the response's id."""
    if op.location is None or not isinstance(out, dict) or not isinstance(out.get("id"), int):
        return None
    return "/api/v1" + op.location.format(id=out["id"])


def bearer_token() -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise NotAuthenticated()
    return token.strip()


def current_user(s):
    user = auth.resolve_token(s, bearer_token())
    if user is None:
        raise NotAuthenticated("the bearer token is invalid or expired.")
    return user


def _check_path(kwargs: dict) -> None:
    for name, value in kwargs.items():
        if isinstance(value, int) and not 1 <= value <= MAX_ID:
            raise NotFound(f"no {name.replace('_id', '').replace('_', ' ')} with id {value}.",
                           fix="Use an id from the matching list endpoint.")


def _dump(response, result):
    if response is None or result is None:
        return result
    if isinstance(result, dict) and isinstance(response, type) and issubclass(response, BaseModel) \
            and not hasattr(response, "__pydantic_generic_metadata__"):
        return response.model_validate(result).model_dump(mode="json")
    return response.model_validate(result, from_attributes=True).model_dump(mode="json")


def _idempotent_replay(s, user, key: str, body_hash: str):
    rec = s.get(IdempotencyRecord, (key, user.id))
    if rec is None:
        return None
    if rec.request_hash != body_hash:
        raise ValidationFailed("this Idempotency-Key was already used with a different request body",
                               field="Idempotency-Key", fix="Send a new key for a new request.")
    return rec


def operation(rule: str, method: str = "GET", *, summary: str, tag: str, perm: str | None,
              body=None, query=None, response=None, status: int = 200, idempotent: bool = False,
              writes_in_maintenance: bool = False, location: str | None = None):
    """Register an API operation. A 201 names where the created resource is read in `location`
    (a path under /api/v1 with {id}, e.g. "/invoices/{id}"): the response carries it as Location."""
    def wrap(fn: Callable):
        endpoint = f"{tag}_{fn.__name__}"
        op = Operation(rule, method, summary, tag, perm, body, query, response, status, idempotent, endpoint,
                       writes_in_maintenance, re.findall(r"<(?:\w+:)?(\w+)>", rule), location)
        OPERATIONS.append(op)

        @functools.wraps(fn)
        def view(**kwargs):
            return retrying(lambda: once(**kwargs))

        def once(**kwargs):
            _check_path(kwargs)
            db = current_app.extensions["erp_db"]
            write = method != "GET"
            with db.session(write=write) as s:
                user = None
                if perm is not None:
                    user = current_user(s)
                    s.info["actor"] = user.username
                    g.user = user
                    if passwords.must_change(user) and endpoint not in FORCED_CHANGE_ALLOWS:
                        raise PermissionDenied("your password was reset by an administrator; change it before "
                                               "anything else.", fix="POST /api/v1/me/password with "
                                               "current_password (the temporary one) and new_password.")
                    if perm != ANY_USER and not permissions.has(user.role, perm):
                        raise PermissionDenied(f"role '{user.role}' may not {summary[0].lower()}{summary[1:]}.",
                                               fix=f"Ask an administrator for a role with '{perm}'.")
                parsed_query = parse(query, request.args.to_dict(), "query") if query else None
                parsed_body = parse(body, _json_body(), "body", strict=True) if body else None
                if write and not writes_in_maintenance:
                    mode = maintenance.state(s)
                    if mode["enabled"]:
                        reason = mode["reason"]
                        raise Maintenance(f"the ERP is read-only for maintenance{': ' + reason if reason else ''}.",
                                          fix="Retry after the maintenance window.",
                                          headers={"Retry-After": str(maintenance.retry_after(mode))})
                key = request.headers.get("Idempotency-Key") if idempotent else None
                if key is not None:
                    if not IDEMPOTENCY_KEY.fullmatch(key):
                        raise ValidationFailed("Idempotency-Key must be 1 to 128 visible ASCII characters",
                                               field="Idempotency-Key", fix="Use a UUID.")
                    body_hash = hashlib.sha256(request.data or b"").hexdigest()
                    rec = _idempotent_replay(s, user, key, body_hash)
                    if rec is not None:
                        resp = jsonify(rec.body)
                        resp.status_code = rec.status
                        resp.headers["Idempotent-Replayed"] = "true"
                        if _location(op, rec.body):
                            resp.headers["Location"] = _location(op, rec.body)
                        return resp
                result = fn(Ctx(s, user, parsed_body, parsed_query), **kwargs)
                if write and result is not None:
                    s.flush()
                    s.expire_all()  # numbers as stored and read back (12.50, 2.000), not as sent (12.5, 2)
                out = _dump(response, result)
                if key is not None:
                    s.add(IdempotencyRecord(key=key, user_id=user.id, request_hash=body_hash, status=status, body=out))
                    try:
                        s.flush()
                    except IntegrityError:
                        raise Conflict("another request with this Idempotency-Key is being processed.",
                                       field="Idempotency-Key", fix="Retry the same request in a moment.") from None
            resp = jsonify(out) if out is not None else current_app.response_class(status=204)
            if out is not None:
                resp.status_code = status
                if _location(op, out):
                    resp.headers["Location"] = _location(op, out)
            return resp

        api.add_url_rule(rule, endpoint=endpoint, view_func=view, methods=[method])
        return fn

    return wrap


COUNT_CAP = 10_000  # rows counted past the page at most: a list's total costs no more than this


def paginate(ctx: Ctx, stmt, transform=None) -> dict:
    """Count and slice a select; rows can be transformed (e.g. masked) before output. The count
    stops COUNT_CAP rows past the page's end: beyond that, total is that bound (at least so many
    rows) and total_is_estimate is true, so a page of a long history costs no full count."""
    q = ctx.query
    bound = q.offset + q.limit + COUNT_CAP
    total = ctx.s.scalar(select(func.count()).select_from(stmt.order_by(None).limit(bound + 1).subquery()))
    estimate = total > bound
    rows = ctx.s.scalars(stmt.limit(q.limit).offset(q.offset)).all()
    items = [transform(r) for r in rows] if transform else rows
    return {"items": items, "total": min(total, bound), "total_is_estimate": estimate, "limit": q.limit,
            "offset": q.offset}


def page_of(model):
    return Page[model]
