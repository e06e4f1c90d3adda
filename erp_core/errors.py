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


class MalformedRequest(ErpError):
    """A request body that is not JSON at all (400); valid JSON with wrong fields is ValidationFailed (422)."""
    status, exit_code, title = 400, 2, "Bad request"


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


class RetryLater(Conflict):
    """The database stopped a change that met another at the same moment (deadlock, serialization
    failure) and retrying it inside did not get through: nothing was saved, the same request may be sent
    again (with Retry-After)."""

    title = "Concurrent change, retry"


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


class SecondFactorRequired(NotAuthenticated):
    """The password was right; a one-time code (TOTP or recovery code) must follow with the challenge."""

    status, exit_code, title = 401, 110, "Second factor required"


class MfaEnrolmentRequired(PermissionDenied):
    """The user's role must log in with a second factor, and none is set up yet."""

    status, exit_code, title = 403, 111, "Multi-factor enrolment required"


class FieldTampered(ErpError):
    """An encrypted value that does not decrypt where it is stored (erp_core.crypto: bound to its table, column
    and row id): moved from another row or column, altered, or sealed with another key. Never shown as a value."""

    status, exit_code, title = 500, 120, "Stored value does not decrypt"

    def __init__(self, table: str, column: str, row_id, why: str = ""):
        self.table, self.column, self.row_id = table, column, row_id
        super().__init__(f"{table}.{column} of row {row_id} does not decrypt with the field key for this row"
                         f"{': ' + why if why else ''} (a value copied from another row or column, an altered "
                         "value, or another key)",
                         fix="Check the field key in use ('erpctl field-key check'); restore the row from a backup "
                             "or enter the value again.", table=table, column=column, row_id=str(row_id))


class RewrapRefused(Conflict):
    """Re-encrypting the fields bound to their row while release 1.0 may still run on the database."""

    exit_code = 121


class AuditEntryNotFound(NotFound):
    exit_code = 122


class NothingToReveal(Conflict):
    exit_code = 123
