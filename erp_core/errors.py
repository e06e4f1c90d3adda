"""Typed errors: each carries a message, a fix, an HTTP status and a CLI exit code.

Mapped once to HTTP (problem+json, see api/problems.py) and once to CLI exit codes.
"""

from __future__ import annotations


class ErpError(Exception):
    """An error the ERP can explain to its user."""

    status = 400
    exit_code = 1
    title = "Bad request"

    def __init__(self, detail: str, *, fix: str | None = None, field: str | None = None,
                 headers: dict[str, str] | None = None, **extra):
        super().__init__(detail)
        self.detail = detail
        self.fix = fix
        self.field = field
        self.headers = headers or {}
        self.extra = extra

    def to_problem(self) -> dict:
        body = {
            "type": f"https://erp-controlplane.dev/problems/{self.slug()}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if self.fix:
            body["fix"] = self.fix
        if self.field:
            body["field"] = self.field
        body.update(self.extra)
        return body

    @classmethod
    def slug(cls) -> str:
        out = []
        for ch in cls.__name__:
            if ch.isupper() and out:
                out.append("-")
            out.append(ch.lower())
        return "".join(out)


class ValidationFailed(ErpError):
    status, exit_code, title = 422, 2, "Invalid input"


class NotAuthenticated(ErpError):
    status, exit_code, title = 401, 3, "Authentication required"

    def __init__(self, detail="A bearer token is required.", **kw):
        kw.setdefault("fix", "Log in with POST /api/v1/auth/login and send 'Authorization: Bearer <token>'.")
        kw.setdefault("headers", {"WWW-Authenticate": 'Bearer realm="erp"'})
        super().__init__(detail, **kw)


class PermissionDenied(ErpError):
    status, exit_code, title = 403, 3, "Permission denied"


class NotFound(ErpError):
    status, exit_code, title = 404, 4, "Not found"


class Conflict(ErpError):
    status, exit_code, title = 409, 5, "Conflict"


class InsufficientStock(Conflict):
    title = "Insufficient stock"


class InvalidTransition(Conflict):
    title = "Invalid state transition"


class MaintenanceRequired(Conflict):
    """An operator repair that must not race the ERP's users: it runs only in maintenance mode."""

    title = "Maintenance mode required"


class TooManyRequests(ErpError):
    status, exit_code, title = 429, 6, "Too many requests"


class Maintenance(ErpError):
    status, exit_code, title = 503, 7, "Maintenance in progress"


class SchemaMismatch(ErpError):
    status, exit_code, title = 503, 8, "Schema not supported"
