"""The control plane's typed errors.

They extend erp_core's ErpError (a message, a fix, an HTTP status and a CLI exit code), so the
CLI (controlplane/cli/main.py) and the ops console map both families the same way, in one place.
Exit codes 1-8 belong to the ERP's errors (erp_core/errors.py); the control plane's start at 10.
"""

from __future__ import annotations

from erp_core.errors import ErpError


class ControlPlaneError(ErpError):
    """An operation of the control plane failed in a way it can explain."""

    status, exit_code, title = 500, 10, "Control plane error"


class CannotListen(ControlPlaneError):
    """A port is taken (or the address cannot be bound)."""

    status, exit_code, title = 409, 11, "Cannot listen"


class DatabaseUnavailable(ControlPlaneError):
    """The database did not answer."""

    status, exit_code, title = 503, 12, "Database unavailable"


class InvariantsViolated(ControlPlaneError):
    """erp_core.invariants found broken business rules."""

    status, exit_code, title = 409, 13, "Invariants violated"


class DataDirProblem(ControlPlaneError):
    """The data directory or a file in it cannot be used."""

    status, exit_code, title = 500, 14, "Data directory problem"


class Interrupted(ControlPlaneError):
    """Stopped by a signal before the work was done."""

    status, exit_code, title = 503, 130, "Interrupted"


EXIT_CODES = {
    0: "success",
    1: "ERP error (generic)",
    2: "invalid input or command-line usage",
    3: "not authenticated or permission denied",
    4: "not found",
    5: "conflict (already exists, wrong state, insufficient stock)",
    6: "too many requests",
    7: "the ERP is in maintenance mode",
    8: "database schema not supported by this code (migrate it, or upgrade erpctl)",
    10: "control plane error (generic)",
    11: "cannot listen on a port (taken, or not allowed)",
    12: "database unavailable",
    13: "invariant violations found",
    14: "data directory problem",
    70: "internal error (a bug: see the log)",
    130: "interrupted",
}
