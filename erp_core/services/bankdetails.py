"""Partners' bank accounts: changed only by the finance role, in effect only once a second finance user
approves (four-eyes). Until then the partner -- and every payment made to it -- keeps the old account.

The change row holds the old and the new account encrypted and bound to it; the audit log holds them
encrypted too (services/audit.py), for an auditor with the field key (erp_core.ops.reveal_audit_entry).
Lock order: the change row, then its partner.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import crypto
from ..errors import Conflict, InvalidTransition, PermissionDenied, ValidationFailed
from ..models import BankDetailChange, Partner
from ..models.base import utcnow
from .common import get_or_404

STATES = ("pending", "approved", "rejected")
HOW = ("A finance user asks for the change (POST /api/v1/partners/{id}/bank-account-changes, or the "
       "Bank details page); another finance user approves it.")


def refuse_direct_change(data: dict) -> None:
    """A partner's bank account is never set by a create or an update: only by an approved change."""
    if data.get("bank_account") is not None:
        raise PermissionDenied("a partner's bank account is changed only through a bank-detail change approved "
                               "by a second finance user", field="bank_account", fix=HOW)


def four_eyes(requested_by: str, decided_by: str) -> None:
    """The rule: whoever asked for a change does not decide it."""
    if requested_by == decided_by:
        raise PermissionDenied(f"{decided_by} asked for this change and cannot approve or reject it (four-eyes)",
                               fix="Another finance user approves or rejects it.")


def _actor(s: Session) -> str:
    return s.info.get("actor", "system")


def request_change(s: Session, partner_id: int, new_value: str, note: str | None = None) -> BankDetailChange:
    partner = get_or_404(s, Partner, partner_id, "partner", lock=True)
    new_value = new_value.strip()
    if not new_value:
        raise ValidationFailed("the new bank account is empty", field="bank_account", fix="Enter the account.")
    if new_value == (partner.bank_account or ""):
        raise ValidationFailed(f"partner {partner.code} already has this bank account", field="bank_account",
                               fix="Enter a different account, or leave it as it is.")
    pending = s.scalar(select(BankDetailChange.id).where(BankDetailChange.partner_id == partner_id,
                                                         BankDetailChange.state == "pending"))
    if pending is not None:
        raise Conflict(f"partner {partner.code} already has a bank-detail change waiting for approval "
                       f"(change {pending})", fix=f"Approve or reject change {pending} first.")
    change = BankDetailChange(partner_id=partner_id, old_value=partner.bank_account, new_value=new_value,
                              state="pending", note=note or None, requested_by=_actor(s), requested_at=utcnow())
    s.add(change)
    s.flush()
    return change


def _pending(s: Session, change_id: int) -> BankDetailChange:
    change = get_or_404(s, BankDetailChange, change_id, "bank-detail change", lock=True)
    if change.state != "pending":
        raise InvalidTransition(f"bank-detail change {change_id} is already {change.state} by {change.decided_by}",
                                fix="Only a pending change can be approved or rejected.")
    four_eyes(change.requested_by, _actor(s))
    return change


def approve(s: Session, change_id: int) -> BankDetailChange:
    """The new account takes effect: the partner's bank account is set (audited with both values sealed)."""
    change = _pending(s, change_id)
    partner = get_or_404(s, Partner, change.partner_id, "partner", lock=True)
    if (partner.bank_account or None) != (change.old_value or None):
        raise Conflict(f"partner {partner.code}'s bank account changed since change {change_id} was asked for",
                       fix="Reject this change and ask again from the current account.")
    partner.bank_account = change.new_value
    change.state, change.decided_by, change.decided_at = "approved", _actor(s), utcnow()
    s.flush()
    return change


def reject(s: Session, change_id: int, reason: str | None = None) -> BankDetailChange:
    change = _pending(s, change_id)
    change.state, change.decided_by, change.decided_at = "rejected", _actor(s), utcnow()
    change.reason = reason or None
    s.flush()
    return change


def changes(s: Session, state: str | None = None, partner_id: int | None = None, limit: int = 100) -> list:
    stmt = select(BankDetailChange, Partner.code, Partner.name).join(Partner, Partner.id == BankDetailChange.partner_id)
    if state:
        stmt = stmt.where(BankDetailChange.state == state)
    if partner_id:
        stmt = stmt.where(BankDetailChange.partner_id == partner_id)
    return s.execute(stmt.order_by(BankDetailChange.id.desc()).limit(limit)).all()


def view(change: BankDetailChange, code: str, name: str, may_see: bool) -> dict:
    shown = (lambda v: v) if may_see else crypto.mask
    return {"id": change.id, "partner_id": change.partner_id, "partner_code": code, "partner_name": name,
            "old_value": shown(change.old_value), "new_value": shown(change.new_value), "state": change.state,
            "note": change.note, "requested_by": change.requested_by, "requested_at": change.requested_at,
            "decided_by": change.decided_by, "decided_at": change.decided_at, "reason": change.reason}
