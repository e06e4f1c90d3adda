"""The OpenAPI 3.1 document, generated from the registered operations and their schemas."""

from __future__ import annotations

import re

from pydantic.json_schema import models_json_schema

from .. import __version__
from .framework import OPERATIONS
from .schemas import Problem

REF = "#/components/schemas/{model}"
ERRORS = {
    "400": "Malformed request", "401": "No or invalid bearer token", "403": "Role lacks the permission",
    "404": "Not found", "409": "Conflict with the current state", "422": "Invalid input",
    "429": "Too many requests", "503": "Maintenance (read-only) or database unavailable",
}
# the operations that check a password or a one-time code, throttled per account and address
THROTTLED = {"/auth/login", "/auth/login/code", "/me/password"}


def _path(rule: str) -> str:
    return re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule)


def build() -> dict:
    keyed = {(Problem, "serialization")}
    keyed |= {(op.body, "validation") for op in OPERATIONS if op.body is not None}
    keyed |= {(op.response, "serialization") for op in OPERATIONS if op.response is not None}
    refs, defs = models_json_schema(sorted(keyed, key=lambda k: (k[0].__name__, k[1])), ref_template=REF)
    schemas = defs.get("$defs", {})

    def ref(model, mode):
        return refs[(model, mode)]

    paths: dict = {}
    for op in OPERATIONS:
        item = paths.setdefault("/api/v1" + _path(op.rule), {})
        params = [{"name": p, "in": "path", "required": True,
                   "schema": {"type": "integer", "minimum": 1, "maximum": 2**31 - 1}} for p in op.path_params]
        if op.query is not None:
            qschema = op.query.model_json_schema(ref_template=REF)
            required = set(qschema.get("required", []))
            for name, prop in qschema.get("properties", {}).items():
                params.append({"name": name, "in": "query", "required": name in required, "schema": prop})
        if op.idempotent:
            params.append({"name": "Idempotency-Key", "in": "header", "required": False,
                           "schema": {"type": "string", "pattern": "^[\\x21-\\x7e]{1,128}$"},
                           "description": "Retrying with the same key and body replays the first response"})
        responses = {str(op.status): {"description": "Success"}}
        if op.response is not None:
            responses[str(op.status)]["content"] = {"application/json": {"schema": ref(op.response, "serialization")}}
        if op.location is not None:
            responses[str(op.status)]["headers"] = {"Location": {
                "description": f"Where the created resource is read: /api/v1{op.location}",
                "schema": {"type": "string"}}}
        problem = {"application/problem+json": {"schema": ref(Problem, "serialization")}}
        codes = ["400", "404", "409", "422"]
        if op.perm is not None:
            codes += ["401", "403"]
        if op.method != "GET":
            codes.append("503")
        if op.rule in ("/auth/login", "/auth/login/code"):
            codes.append("401")  # wrong password or code (or a code needed: a challenge)
        if op.rule in THROTTLED:
            codes.append("429")  # too many failures (services/throttle.py)
        if op.rule == "/auth/login":
            codes.append("403")  # the role requires multi-factor login and the user has not set it up
        for code in codes:
            responses[code] = {"description": ERRORS[code], "content": problem}
        spec = {"operationId": op.endpoint, "summary": op.summary, "tags": [op.tag],
                "parameters": params, "responses": responses}
        if op.perm is not None:
            spec["security"] = [{"bearer": []}]
            spec["description"] = f"Requires permission `{op.perm}`."
        if op.body is not None:
            # A body whose every field has a default may be left out (it reads as {}).
            required = any(f.is_required() for f in op.body.model_fields.values())
            spec["requestBody"] = {"required": required,
                                   "content": {"application/json": {"schema": ref(op.body, "validation")}}}
        item[op.method.lower()] = spec
    return {
        "openapi": "3.1.0",
        "info": {"title": "erp_core API", "version": __version__,
                 "description": "Sales, purchasing, stock and double-entry finance. Errors are "
                                "application/problem+json naming the field and the fix."},
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {"schemas": schemas,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }


