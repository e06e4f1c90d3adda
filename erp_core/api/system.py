"""The audit log (read-only through the product) and the maintenance switch."""

from sqlalchemy import select

from ..models import AuditLog
from ..services import maintenance
from . import schemas as S
from .framework import operation, paginate


@operation("/audit-log", summary="Read the audit log", tag="audit", perm="audit.read", query=S.AuditQuery,
           response=S.Page[S.AuditOut])
def list_audit(ctx):
    q = ctx.query
    stmt = select(AuditLog).order_by(AuditLog.id.desc())
    for col in ("entity", "actor", "action"):
        if getattr(q, col):
            stmt = stmt.where(getattr(AuditLog, col) == getattr(q, col))
    return paginate(ctx, stmt)


@operation("/system/maintenance", summary="Is the ERP read-only for maintenance", tag="system",
           perm="system.read", response=S.MaintenanceOut)
def get_maintenance(ctx):
    return maintenance.state(ctx.s)


@operation("/system/maintenance", "PUT", summary="Switch maintenance (read-only) mode on or off",
           tag="system", perm="system.write", body=S.MaintenanceIn, response=S.MaintenanceOut,
           writes_in_maintenance=True)
def put_maintenance(ctx):
    return maintenance.set_state(ctx.s, ctx.body.enabled, ctx.body.reason)
