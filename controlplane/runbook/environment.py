"""What the blocks of a run see (runbooks/README.md, Environment): the installation's variables from the
engine's options and the serving ports `erpctl up` recorded, the --param values, and PATH starting with
the directory of this interpreter's erpctl. And how secrets are kept out of output and the evidence log."""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import SettingInvalid

SECRET_WORDS = ("TOKEN", "PASSWORD", "PASSPHRASE", "SECRET", "KEY")
MIN_SECRET_LENGTH = 4   # shorter values ("1", "yes") are not searched for in output
MASK = "***"
PARAM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def is_secret(name: str) -> bool:
    return any(w in name.upper() for w in SECRET_WORDS)


def erpctl_program() -> str:
    """The erpctl of this interpreter (beside sys.executable), else the one on PATH."""
    beside = Path(sys.executable).with_name("erpctl")
    return str(beside) if beside.exists() else (shutil.which("erpctl") or "erpctl")


def parse_params(pairs) -> dict:
    """--param K=V ... as a dict; a malformed one is refused (exit 2)."""
    out = {}
    for pair in pairs or ():
        name, eq, value = pair.partition("=")
        if not eq or not PARAM_NAME.fullmatch(name):
            raise SettingInvalid(f"--param {pair.split('=')[0]!r}: expected NAME=VALUE with NAME a variable name",
                                 fix="Pass --param ERP_TOKEN=... (letters, digits and _; the value after '=').")
        out[name] = value
    return out


def installation_env(inst) -> dict:
    """ERPCTL_DATA_DIR, ERPCTL_DATABASE_URL, ERP_URL, OPS_URL (where the last `erpctl up` served, from
    runtime.json, running or not; else the settings), and Prometheus' and Alertmanager's URLs where they are set: passed at
    their defaults they would read as configured (`erpctl status` flags a configured one that does not answer)."""
    rt = inst.runtime()
    host = inst.get("host")
    host = "127.0.0.1" if host in ("0.0.0.0", "") else host
    out = {  # recorded also when that erpctl up has died: `erpctl restart` starts it on the same ports
        "ERPCTL_DATA_DIR": str(inst.data_dir),
        "ERPCTL_DATABASE_URL": inst.database_url,
        "ERP_URL": (rt.erp_url or inst.get("erp_url")).rstrip("/"),
        "OPS_URL": (rt.ops_url or f"http://{host}:{inst.get('ops_port')}").rstrip("/"),
    }
    for name, setting in (("ERPCTL_PROMETHEUS_URL", "prometheus_url"), ("ERPCTL_ALERTMANAGER_URL", "alertmanager_url")):
        found = inst.resolve(setting)
        if found.source != "default":
            out[name] = str(found.value)
    return out


def child_env(run_env: dict) -> dict:
    """The environment of a block's process: erpctl's own, the run's variables, PATH with this erpctl first."""
    env = {**os.environ, **run_env}
    env["PATH"] = os.pathsep.join([str(Path(erpctl_program()).parent), env.get("PATH", os.defpath)])
    return env


def secret_values(env: dict) -> list[str]:
    """Values to mask: those of variables named like secrets, and passwords inside URLs."""
    found = set()
    for name, value in env.items():
        if not isinstance(value, str):
            continue
        if is_secret(name) and len(value) >= MIN_SECRET_LENGTH:
            found.add(value)
        if "://" in value:
            try:
                password = urlsplit(value).password
            except ValueError:
                password = None
            if password and len(password) >= MIN_SECRET_LENGTH:
                found.add(password)
    return sorted(found, key=len, reverse=True)


class Redactor:
    """Masks the secrets of an environment in any text."""

    def __init__(self, env: dict):
        self.secrets = secret_values(env)

    def __call__(self, text: str) -> str:
        for s in self.secrets:
            text = text.replace(s, MASK)
        return text

    def params(self, env: dict) -> dict:
        return {k: MASK if is_secret(k) else self(str(v)) for k, v in env.items()}


def substitute(text: str, env: dict) -> str:
    """$VAR, ${VAR}, ${VAR:-default} and ${VAR:?message} replaced as the shell would with `env` (secrets
    shown as ***); unset variables without a default are left as they are."""
    def one(m):
        name, op, word = m.group(1) or m.group(4), m.group(2) or "", m.group(3)
        value = env.get(name)
        if value or (value is not None and not op.startswith(":")):
            return MASK if is_secret(name) else value
        if op.endswith("-"):
            return word
        return m.group(0)
    return _VAR.sub(one, text)
