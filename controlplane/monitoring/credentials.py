"""The monitoring secrets kept in the data directory (mode 0600, created by `erpctl up`):

    probe-login.json      the ERP user the business probe logs in as (role auditor: reads only)
    alert-webhook.token   the bearer token Alertmanager sends to POST /alerts/webhook
                          (Alertmanager: webhook_configs: http_config: authorization: credentials_file)
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import socket
from pathlib import Path

from erp_core import ops
from erp_core.errors import Conflict

from ..config import read_private, write_private
from ..errors import DataDirProblem
from .. import layout

log = logging.getLogger("controlplane.monitoring")

PROBE_LOGIN_FILE = layout.name("probe_login")
PROBE_USER = "erpctl-probe"  # the prefix of every installation's probe user
PROBE_ROLE = "auditor"
WEBHOOK_TOKEN_FILE = layout.name("webhook_token")


def probe_login(data_dir) -> dict:
    path = Path(data_dir) / PROBE_LOGIN_FILE
    try:
        login = json.loads(read_private(path))
        return {"username": str(login["username"]), "password": str(login["password"])}
    except FileNotFoundError:
        raise DataDirProblem(f"no probe login in {data_dir}", fix="Start 'erpctl up' once: it creates it.") from None
    except (ValueError, KeyError, TypeError):
        raise DataDirProblem(f"{path} is not a probe login file",
                             fix="Delete it; the next 'erpctl up' creates a new one.") from None


def probe_user_name(data_dir) -> str:
    """The probe user of this installation: one per host and data directory, so that app hosts sharing a
    database each keep their own password (one host's first start never resets another's), while a data
    directory rebuilt in place takes its old user back."""
    where = f"{socket.gethostname()}:{Path(data_dir).resolve()}"
    return f"{PROBE_USER}-{hashlib.sha256(where.encode()).hexdigest()[:8]}"


def ensure_probe_user(db, data_dir) -> dict:
    """The probe user exists in the ERP with the password kept in the data directory. A database
    that already had the user with another password (this data directory rebuilt) gets the new one."""
    path = Path(data_dir) / PROBE_LOGIN_FILE
    created_file = False
    if not path.exists():
        created_file = write_private(path, json.dumps({"username": probe_user_name(data_dir),
                                                       "password": secrets.token_urlsafe(24)}) + "\n")
    login = probe_login(data_dir)
    with db.session(actor="erpctl") as s:
        try:
            ops.create_user(s, login["username"], login["password"], PROBE_ROLE, full_name="erpctl business probe",
                            service=True)
            state = "created"
        except Conflict:
            state = "exists"
            ops.mark_service_user(s, login["username"])  # one created before service users were marked
    if state == "exists" and created_file:
        with db.session(actor="erpctl") as s:
            ops.set_password(s, login["username"], login["password"])
        state = "password reset"
    if state != "exists":
        log.info("probe user ready", extra={"user": login["username"], "state": state})
    return {"username": login["username"], "state": state}


def ensure_webhook_token(data_dir) -> Path:
    path = Path(data_dir) / WEBHOOK_TOKEN_FILE
    if not path.exists() and write_private(path, secrets.token_urlsafe(32) + "\n"):
        log.info("created the alert webhook token", extra={"path": str(path)})
    return path


def webhook_token(data_dir) -> str | None:
    path = Path(data_dir) / WEBHOOK_TOKEN_FILE
    try:
        return read_private(path) or None
    except FileNotFoundError:
        return None
