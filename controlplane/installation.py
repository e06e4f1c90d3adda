"""The installation: one data directory, every file the control plane keeps in it, and every
operator setting resolved once.

Layout. LAYOUT lists every file and directory of the data directory with the module that writes
it, its format and its version; `Installation.path(key)` is the only way code names one of them.
docs/installation.md is generated from LAYOUT and SETTINGS (`python -m controlplane.installation`),
and a test fails when it differs.

Settings. Every setting comes from the first of these that has it:

    1. its command-line flag;
    2. its environment variable;
    3. for the settings `erpctl up` records (the ERP's URL, the probe thresholds), what the running
       `erpctl up` on this data directory recorded in runtime.json: what it really uses;
    4. its key in erpctl.toml in the data directory (for the backup repository and S3, then the
       older backup.json beside it);
    5. its default.

A value that is not what the setting takes stops the command with exit 2, naming the value, where
it came from and how to fix it.

State records. Long operations keep typed, versioned records (runtime.json, serving.json, the
upgrade and restore states); a file written by a newer erpctl is refused with a clear error
rather than misread, and files written before records had a version load as version 1.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping

from .config import DEFAULT_DATA_DIR, Target, default_url, resolve as resolve_target
from .errors import DataDirProblem, SettingInvalid
from .fsutil import atomic_write_text
from .permissions import check_private
from . import blackout, layout, procs
from .layout import FILES, LAYOUT, Entry  # noqa: F401 - the layout is part of the installation's interface

UNSET = object()


# ---- the settings --------------------------------------------------------------------------------

def _text(raw) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise ValueError("a non-empty text")
    return raw.strip()


def _number(kind: type, what: str, low: float | None = None, high: float | None = None, strict: bool = False):
    def parse(raw):
        if isinstance(raw, bool):
            raise ValueError(what)
        try:
            value = kind(raw)
        except (TypeError, ValueError):
            raise ValueError(what) from None
        if (low is not None and (value <= low if strict else value < low)) or (high is not None and value > high):
            raise ValueError(what)
        return value
    return parse


def _repo_url(raw) -> str:
    text = _text(raw)
    return text if "://" in text else f"file://{Path(text).expanduser().resolve()}"


@dataclass(frozen=True)
class Setting:
    """One operator setting and where it may come from."""

    name: str
    flag: str | None
    env: tuple[str, ...]
    toml: str | None            # "section.key" in erpctl.toml
    default: Any                # a value, or a callable of the installation
    parse: Callable[[Any], Any]
    kind: str                   # what the value must be, for the table and the errors
    what: str
    legacy: str | None = None   # "key.sub" in backup.json
    recorded: bool = False      # erpctl up records the value it uses in runtime.json
    default_text: str = ""


def _default_repo(inst: "Installation") -> str:
    return f"file://{inst.path('backups')}"


def _default_erp_url(inst: "Installation") -> str:
    last = inst.runtime().erp_url  # where the last `erpctl up` served, even once stopped
    if last:
        return last
    host = inst.get("host")
    host = "127.0.0.1" if host in ("0.0.0.0", "") else host
    return f"http://{host}:{inst.get('erp_port')}"


def _default_escrow_file(inst: "Installation") -> Path:
    return inst.data_dir.parent / f"{inst.data_dir.name}.field-key.escrow"  # beside the data directory


def _shipped_runbooks(_inst: "Installation") -> Path:
    return (Path(__file__).resolve().parent / "runbook" / "shipped").resolve()  # runbooks/ in a checkout


def installation_id(data_dir: str | os.PathLike) -> str:
    """The first 16 hex digits of the SHA-256 of the data directory's absolute path."""
    return hashlib.sha256(str(Path(data_dir).expanduser().resolve()).encode()).hexdigest()[:16]


def _default_evidence_key(inst: "Installation") -> Path:
    """Outside the data directory: the user's configuration directory (controlplane/evidence_keys.py)."""
    env = inst.environ
    base = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME") or Path.home()) / ".config")
    return Path(base).expanduser() / "erpctl" / f"evidence-{installation_id(inst.data_dir)}.key"
def _release_keys(inst: "Installation") -> Path:
    return inst.path("release_keys")


def _path(raw) -> Path:
    return Path(_text(str(raw))).expanduser().resolve()


def _shipped_playbooks(_inst: "Installation") -> Path:
    return (Path(__file__).resolve().parent / "remote" / "playbooks").resolve()  # playbooks/ in a checkout


def _roles(raw) -> str:
    """'admin, finance' -> 'admin,finance'; 'none' (or empty) -> 'none'; an unknown role is refused."""
    if not isinstance(raw, str):
        raise ValueError("a comma-separated list of roles, or 'none'")
    names = [r.strip().lower() for r in raw.split(",") if r.strip()]
    if not names or names == ["none"]:
        return "none"
    from erp_core.ops import ROLES  # read when the setting is, not by every command

    if any(n not in ROLES for n in names):
        raise ValueError(f"a comma-separated list of roles ({', '.join(ROLES)}), or 'none'")
    return ",".join(names)


def _proxies(raw) -> str:
    """'10.0.0.5, 10.0.1.0/24' -> '10.0.0.5/32,10.0.1.0/24'; 'none' (or empty) -> 'none'."""
    from erp_core.ops import parse_networks  # no SQLAlchemy, no Flask

    networks = parse_networks(raw if isinstance(raw, str) else ",".join(map(str, raw or [])))
    return ",".join(map(str, networks)) or "none"


_PORT = _number(int, "a port number from 0 to 65535", 0, 65535)
_POSITIVE = _number(float, "a positive number", 0, strict=True)
_LEVEL = _number(int, "a verification level from 1 to 4", 1, 4)
_WORKERS = _number(int, "a whole number of processes from 1 to 32", 1, 32)
_THREADS = _number(int, "a whole number of threads from 1 to 64", 1, 64)


def _default_workers(inst: "Installation") -> int:
    """PostgreSQL: one worker process per core (one Python process uses one core at most), at least 2, at
    most 8. SQLite: one (its writes take one file's lock in turn; writers of other processes wait in
    SQLite's busy handler, which sleeps and retries: bench/README.md measured p99 2.3 s with two, 0.8 s
    with one at 32 clients)."""
    url = inst.get("database_url") or ""
    if not url or url.startswith("sqlite"):
        return 1
    return max(2, min(os.cpu_count() or 1, 8))


def _default_threads(inst: "Installation") -> int:
    return 16 if inst.get("erp_workers") == 1 else 8

SETTINGS: tuple[Setting, ...] = (
    Setting("database_url", "--database-url", ("ERPCTL_DATABASE_URL",), "database.url", None, _text, "URL",
            "the ERP's database (PostgreSQL: postgresql://user:pass@host/db)",
            default_text="SQLite erp.sqlite3 in the data directory"),
    Setting("host", "--host", ("ERPCTL_HOST",), "erp.host", "127.0.0.1", _text, "address",
            "address 'erpctl up' listens on"),
    Setting("erp_port", "--erp-port", ("ERPCTL_ERP_PORT",), "erp.port", 8000, _PORT, "port",
            "port of the ERP under 'erpctl up'"),
    Setting("ops_port", "--ops-port", ("ERPCTL_OPS_PORT",), "ops.port", 8001, _PORT, "port",
            "port of the ops console under 'erpctl up'"),
    Setting("ops_host", "--ops-host", ("ERPCTL_OPS_HOST",), "ops.host", lambda inst: inst.get("host"), _text,
            "address", "address the ops console listens on (keep it on loopback or a private network)",
            default_text="the ERP's host"),
    Setting("metrics_token", None, ("ERPCTL_METRICS_TOKEN",), "monitoring.metrics_token", None, _text, "text",
            "bearer token /metrics (both ports) and /alerts require; with it the ERP's /metrics adds the "
            "business figures (none: they answer anyone, without business figures)"),
    Setting("mfa_roles", None, ("ERPCTL_MFA_ROLES",), "erp.mfa_roles", "admin,finance", _roles, "roles",
            "roles whose users log in to the ERP with a second factor (TOTP), comma-separated, or 'none'; "
            "the operators' service users (the business probe) never need one (docs/threat-model.md)"),
    Setting("trusted_proxies", None, ("ERPCTL_TRUSTED_PROXIES",), "erp.trusted_proxies", "none", _proxies,
            "addresses or networks", "the reverse proxies (load balancers) in front of the ERP, comma-separated "
            "(10.0.0.5, 10.0.1.0/24), or 'none': their X-Forwarded-For names the client that login throttling, "
            "the login history and the sessions list see; anyone else's X-Forwarded-For is ignored"),
    Setting("company_name", None, ("ERPCTL_COMPANY_NAME",), "company.name", None, _text, "text",
            "the company's name on the ERP's printed documents (the seller on an invoice PDF)"),
    Setting("company_tax_id", None, ("ERPCTL_COMPANY_TAX_ID",), "company.tax_id", None, _text, "text",
            "the company's taxpayer id on the printed documents"),
    Setting("company_address", None, ("ERPCTL_COMPANY_ADDRESS",), "company.address", None, _text, "text",
            "the company's address and phone on the printed documents"),
    Setting("company_bank_account", None, ("ERPCTL_COMPANY_BANK_ACCOUNT",), "company.bank_account", None, _text,
            "text", "the company's bank and account number on its invoices"),
    Setting("erp_workers", None, ("ERPCTL_ERP_WORKERS",), "erp.workers", _default_workers, _WORKERS, "count",
            "worker processes that serve the ERP under 'erpctl up' (1: one process; a release from before "
            "workers is served by one process whatever this says)", default_text="SQLite: 1; PostgreSQL: the host's cores, 2 to 8"),
    Setting("erp_threads", None, ("ERPCTL_ERP_THREADS",), "erp.threads", _default_threads, _THREADS, "count",
            "threads of each ERP worker process (each worker keeps as many database connections, and half as "
            "many more at a peak)", default_text="8; 16 with one worker process"),
    Setting("erp_url", "--erp-url", ("ERPCTL_ERP_URL",), "erp.url", _default_erp_url, _text, "URL",
            "the ERP that status and upgrades talk to", recorded=True,
            default_text="where the last 'erpctl up' served, else http://<host>:<erp_port>"),
    Setting("backup_repo", "--repo", ("ERPCTL_BACKUP_REPO",), "backup.repo", _default_repo, _repo_url, "URL or path",
            "the backup repository: file:///abs/path or s3://bucket/prefix", legacy="repo",
            default_text="file://<data dir>/backups", recorded=True),
    Setting("backup_key_file", "--key-file", ("ERPCTL_BACKUP_KEY_FILE",), "backup.key_file", None,
            lambda raw: Path(_text(str(raw))).expanduser(), "path", "key file of the backup repository",
            recorded=True),
    Setting("backup_passphrase", None, ("ERPCTL_BACKUP_PASSPHRASE",), None, None, _text, "text",
            "passphrase of the backup repository", default_text="asked on a terminal"),
    Setting("backup_verify_level", None, (), "backup.verify_level", 3, _LEVEL, "level 1-4",
            "level the scheduled backup.verify job checks up to"),
    Setting("backup_restore_test_level", None, (), "backup.restore_test_level", 4, _LEVEL, "level 1-4",
            "level the scheduled restore test checks up to"),
    Setting("field_key_escrow_file", None, ("ERPCTL_ESCROW_FILE",), "field_key.escrow_file", _default_escrow_file,
            lambda raw: Path(_text(str(raw))).expanduser().resolve(), "path",
            "where the escrow copy of the field-encryption key is written and recovered from",
            default_text="<data dir>.field-key.escrow beside the data directory"),
    Setting("field_key_escrow_passphrase", None, ("ERPCTL_ESCROW_PASSPHRASE",), None, None, _text, "text",
            "passphrase the field key's escrow copy is sealed with (and opened with)"),
    Setting("field_key_escrow_public_key", None, ("ERPCTL_ESCROW_PUBLIC_KEY",), "field_key.escrow_public_key", None,
            lambda raw: Path(_text(str(raw))).expanduser().resolve(), "path",
            "RSA public key (PEM) the field key's escrow copy is sealed to (its private key opens it)"),
    Setting("s3_endpoint_url", None, ("ERPCTL_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"),
            "backup.s3.endpoint_url", None, _text, "URL", "S3 endpoint (MinIO, moto...)",
            legacy="s3.endpoint_url", default_text="AWS"),
    Setting("s3_region", None, ("AWS_REGION", "AWS_DEFAULT_REGION"), "backup.s3.region", "us-east-1", _text,
            "text", "S3 region", legacy="s3.region"),
    Setting("s3_access_key_id", None, ("AWS_ACCESS_KEY_ID",), "backup.s3.access_key_id", None, _text, "text",
            "S3 access key id", legacy="s3.access_key_id", default_text="boto3's own lookup"),
    Setting("s3_secret_access_key", None, ("AWS_SECRET_ACCESS_KEY",), "backup.s3.secret_access_key", None, _text,
            "text", "S3 secret key", legacy="s3.secret_access_key", default_text="boto3's own lookup"),
    Setting("s3_connect_timeout", None, ("ERPCTL_S3_CONNECT_TIMEOUT",), "backup.s3.connect_timeout", 5.0,
            _POSITIVE, "seconds", "S3 connect timeout", legacy="s3.connect_timeout"),
    Setting("s3_read_timeout", None, ("ERPCTL_S3_READ_TIMEOUT",), "backup.s3.read_timeout", 60.0, _POSITIVE,
            "seconds", "S3 read timeout", legacy="s3.read_timeout"),
    Setting("s3_max_attempts", None, ("ERPCTL_S3_MAX_ATTEMPTS",), "backup.s3.max_attempts", 3,
            _number(int, "a whole number of at least 1", 1), "count", "S3 attempts per request",
            legacy="s3.max_attempts"),
    Setting("probe_backup_max_age_seconds", None, ("ERPCTL_PROBE_BACKUP_MAX_AGE_SECONDS",),
            "probes.backup_max_age_seconds", 26 * 3600.0, _POSITIVE, "seconds",
            "age after which the last successful backup is too old", recorded=True),
    Setting("probe_disk_min_free_bytes", None, ("ERPCTL_PROBE_DISK_MIN_FREE_BYTES",), "probes.disk_min_free_bytes",
            2**30, _number(int, "a positive whole number of bytes", 0, strict=True), "bytes",
            "free space the data directory's filesystem must keep", recorded=True),
    Setting("probe_http_timeout_seconds", None, ("ERPCTL_PROBE_HTTP_TIMEOUT_SECONDS",),
            "probes.http_timeout_seconds", 5.0, _POSITIVE, "seconds", "the probes' HTTP timeout", recorded=True),
    Setting("prometheus_url", "--prometheus-url", ("ERPCTL_PROMETHEUS_URL",), "monitoring.prometheus_url",
            "http://127.0.0.1:9090", _text, "URL", "Prometheus, which evaluates the alert rules ('erpctl status' "
            "checks that it answers; critical when set and silent)"),
    Setting("alertmanager_url", "--alertmanager-url", ("ERPCTL_ALERTMANAGER_URL",), "monitoring.alertmanager_url",
            "http://127.0.0.1:9093", _text, "URL", "Alertmanager, which routes the pages ('erpctl status' checks "
            "that it answers; critical when set and silent)"),
    Setting("runbooks_dir", "--runbooks-dir", ("ERPCTL_RUNBOOKS_DIR",), "runbooks.dir", _shipped_runbooks,
            _path, "path",
            "the runbooks 'erpctl runbook' runs", default_text="the runbooks shipped with erpctl"),
    Setting("drill_blackout", None, ("ERPCTL_DRILL_BLACKOUT",), "drill.blackout", (), blackout.parse_all,
            "blackout windows", "days scheduled drills are skipped (month-end[:N], month-start[:N], day:D[-E], "
            "YYYY-MM-DD[..YYYY-MM-DD], each optionally NAME=...; the env comma-separated)", default_text="none"),
    Setting("drill_prometheus", None, ("ERPCTL_DRILL_PROMETHEUS",), "drill.prometheus", "prometheus", _text,
            "program", "the Prometheus a drill starts to evaluate its scenario's alert with the shipped rules "
            "(a name looked up on PATH, or a path); when it is not found the drill detects by the probes only "
            "and says so"),
    Setting("drill_timeout_seconds", None, ("ERPCTL_DRILL_TIMEOUT_SECONDS",), "drill.timeout_seconds", 4 * 3600.0,
            _POSITIVE, "seconds", "how long a scheduled drill may run before it is stopped and counted failed"),
    Setting("evidence_key_file", None, ("ERPCTL_EVIDENCE_KEY_FILE",), "evidence.key_file", _default_evidence_key,
            _path, "path",
            "the private key that signs evidence records (made 0600 at first use; refused when others may read it)",
            default_text="$XDG_CONFIG_HOME/erpctl/evidence-<installation id>.key (~/.config when unset; the id: "
                         "the first 16 hex digits of the SHA-256 of the data directory's absolute path)"),
    Setting("evidence_anchor", None, ("ERPCTL_EVIDENCE_ANCHOR",), "evidence.anchor", None, _repo_url, "URL or path",
            "a second, append-only store for the evidence log's head (a directory or s3://bucket/prefix; S3 "
            "settings as for backups): every record's head is written there as a new object",
            default_text="none (backup manifests still anchor it)"),
    Setting("operator", None, ("ERPCTL_OPERATOR",), None, None, _text, "name",
            "the authenticated operator recorded as the actor of evidence records (the OS user is recorded too)",
            default_text="the OS user ($LOGNAME)"),
    Setting("release_trusted_keys", "--trusted-keys", ("ERPCTL_RELEASE_TRUSTED_KEYS",), "release.trusted_keys",
            _release_keys, _path, "path", "file or directory of the public keys trusted to sign release wheels",
            default_text="<data dir>/release-keys/"),
    Setting("fleet_inventory", "--inventory", ("ERPCTL_FLEET_INVENTORY",), "fleet.inventory",
            lambda inst: inst.path("fleet_inventory"), _path, "path",
            "the fleet's Ansible YAML inventory (hosts and roles)", default_text="fleet/inventory.yml in the data directory"),
    Setting("fleet_known_hosts", "--known-hosts", ("ERPCTL_FLEET_KNOWN_HOSTS",), "fleet.known_hosts",
            lambda inst: inst.path("fleet_known_hosts"), _path, "path",
            "known-hosts file the fleet's host keys are checked against (strictly)",
            default_text="fleet/known_hosts in the data directory"),
    Setting("fleet_identity_file", "--identity", ("ERPCTL_FLEET_IDENTITY_FILE",), "fleet.identity_file", None,
            _path, "path", "private key erpctl fleet logs in with (a host's ansible_ssh_private_key_file wins)",
            default_text="the inventory's ansible_ssh_private_key_file"),
    Setting("fleet_connect_timeout", "--connect-timeout", ("ERPCTL_FLEET_CONNECT_TIMEOUT",),
            "fleet.connect_timeout", 10.0, _POSITIVE, "seconds", "SSH connect and login timeout per host"),
    Setting("fleet_command_timeout", "--command-timeout", ("ERPCTL_FLEET_COMMAND_TIMEOUT",),
            "fleet.command_timeout", 300.0, _POSITIVE, "seconds", "time a remote command may run per host"),
    Setting("fleet_parallel", "--parallel", ("ERPCTL_FLEET_PARALLEL",), "fleet.parallel", 10,
            _number(int, "a whole number of at least 1", 1), "count", "hosts worked on at once"),
    Setting("fleet_playbooks_dir", "--playbooks-dir", ("ERPCTL_FLEET_PLAYBOOKS_DIR",), "fleet.playbooks_dir",
            _shipped_playbooks, _path, "path", "the Ansible project 'erpctl fleet deploy' runs (ansible.cfg, roles)",
            default_text="the playbooks shipped with erpctl"),
    Setting("drill_postgresql_url", None, ("ERPCTL_DRILL_POSTGRESQL_URL",), "drill.postgresql_url", None,
            _text, "URL", "a PostgreSQL server's URL (a database to connect to, e.g. postgres) where 'erpctl drill run "
            "--backend postgresql' creates and drops its scratch databases",
            default_text="the server of the installation's PostgreSQL database"),
    Setting("drill_retention_days", None, (), "drill.retention_days", 1095, _number(int, "a whole number of days", 1),
            "days", "how long drill records are kept (their retention_until)"),
    Setting("scheduler_timezone", None, (), "scheduler.timezone", None, _text, "time zone",
            "time zone of cron schedules", default_text="the machine's"),
)
BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}
# Secrets erpctl.toml may hold: then only its owner may read it.
TOML_SECRETS = ("backup.s3.secret_access_key", "monitoring.metrics_token")
SCHEDULE_ENV_PREFIX = "ERPCTL_SCHEDULE_"


@dataclass(frozen=True)
class Resolved:
    value: Any
    source: str


def _dig(table: Mapping, dotted: str):
    node: Any = table
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return UNSET
        node = node[part]
    return node


# ---- state records -------------------------------------------------------------------------------

@dataclass
class Record:
    """A typed, versioned JSON record of the data directory. Unknown fields are kept as they were."""

    KEY: ClassVar[str] = ""
    VERSION: ClassVar[int] = 1
    VERSION_FIELD: ClassVar[str] = "version"
    extra: dict = field(default_factory=dict, repr=False)

    @classmethod
    def from_dict(cls, data: Mapping, where: str = "") -> "Record":
        if not isinstance(data, Mapping):
            raise DataDirProblem(f"{where or cls.KEY} is not a JSON object", fix="Restore it, or move it away.")
        check_version({"version": data.get(cls.VERSION_FIELD, 1)}, cls.VERSION, where or cls.KEY)
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: v for k, v in data.items() if k in names}
        known[cls.VERSION_FIELD] = cls.VERSION
        return cls(**known, extra={k: v for k, v in data.items() if k not in names})

    def as_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        return {**self.extra, **out}


def check_version(data: Mapping, supported: int, where: str) -> int:
    """The record's version (1 when it has none: written before records had one); a newer one refused."""
    raw = data.get("version", 1) if isinstance(data, Mapping) else None
    if not isinstance(raw, int) or isinstance(raw, bool) or raw < 1:
        raise DataDirProblem(f"{where} has no valid record version ({raw!r})",
                             fix="Restore it from a backup, or move it away if nothing is running.")
    if raw > supported:
        raise DataDirProblem(f"{where} was written by a newer erpctl (record version {raw}; this one reads "
                             f"up to {supported})", fix="Use the erpctl that wrote it (or a newer one).")
    return raw


@dataclass
class RuntimeRecord(Record):
    """runtime.json: what the last `erpctl up` on this data directory serves, and how it was started
    (version 2: its process's start time, host, ports and database, which `erpctl stop` and
    `erpctl restart` rely on; a version 1 record has none of them)."""

    KEY: ClassVar[str] = "runtime"
    VERSION: ClassVar[int] = 2
    version: int = 2
    pid: int | None = None
    pid_start: int | None = None   # the process's start time (procs.start_ticks): a reused pid has another
    running: bool = False
    erp_url: str | None = None
    ops_url: str | None = None
    metrics_url: str | None = None
    alert_webhook_url: str | None = None
    started_at: str | None = None
    stopped_at: str | None = None
    settings: dict = field(default_factory=dict)   # the recorded settings' values, by name
    data_dir: str | None = None
    host: str | None = None
    erp_port: int | None = None
    ops_port: int | None = None
    ops_host: str | None = None          # where the ops console listens, when apart from `host`
    database: str | None = None          # the database URL, its password hidden
    database_backend: str | None = None  # sqlite, postgresql
    unit: str | None = None              # the systemd unit that runs it, if one does
    stopped_by: str | None = None        # "erpctl stop (SIGKILL)" when erpctl stop ended it
    jobs: list = field(default_factory=list)  # its scheduled jobs: [{id, schedule, source, enabled, ...}]

    def recorded(self, name: str):
        """The value this `erpctl up` uses for a recorded setting (UNSET when it did not record it)."""
        if name == "erp_url":
            return self.erp_url or UNSET
        return self.settings.get(name, UNSET)

    def alive(self) -> bool:
        if not (self.running and self.pid):
            return False
        if self.pid_start is not None:
            return procs.is_same(self.pid, self.pid_start)
        try:
            os.kill(int(self.pid), 0)
        except ProcessLookupError:
            return False
        except (PermissionError, ValueError, TypeError, OverflowError):
            return isinstance(self.pid, int)
        return True


@dataclass
class ServingRecord(Record):
    """releases/serving.json: the release the running `erpctl up` serves."""

    KEY: ClassVar[str] = "serving"
    VERSION_FIELD: ClassVar[str] = "record_version"  # "version" is the release's
    record_version: int = 1
    state: str | None = None
    version: str | None = None
    pid: int | None = None
    restarts: int = 0
    at: str | None = None
    erpctl_pid: int | None = None
    ready_seconds: float | None = None  # how long its ERP took from start to serving


# ---- the installation ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Installation(Target):
    """A data directory, its database, and the operator settings (flag > env > recorded > toml > default).
    It is a Target: every function taking one takes an Installation."""

    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ), compare=False, repr=False)
    flags: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    toml: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    toml_error: str | None = field(default=None, compare=False, repr=False)
    read_recorded: bool = field(default=True, compare=False, repr=False)  # False inside `erpctl up`, the recorder

    @classmethod
    def open(cls, data_dir=None, database_url=None, *, environ: Mapping[str, str] | None = None,
             strict: bool = True, **flags) -> "Installation":
        """The installation at --data-dir (else ERPCTL_DATA_DIR, else ./erpctl-data); `flags` are the
        command-line values of settings (None: not given). strict=False reads past a broken erpctl.toml
        (toml_error says why) for commands that report on a broken installation."""
        environ = dict(os.environ) if environ is None else dict(environ)
        directory = Path(data_dir or environ.get("ERPCTL_DATA_DIR") or DEFAULT_DATA_DIR).expanduser().resolve()
        toml, error = {}, None
        try:
            toml = read_toml(directory / FILES["config"].path)
        except SettingInvalid as exc:
            if strict:
                raise
            error = exc.detail if hasattr(exc, "detail") else str(exc)
        given = {k: v for k, v in flags.items() if v is not None}
        if database_url is not None:
            given["database_url"] = database_url
        probe = cls(directory, "", environ, given, toml, error)
        base = resolve_target(directory, probe.get("database_url") or default_url(directory))
        return cls(base.data_dir, base.database_url, environ, given, toml, error)

    @classmethod
    def of(cls, target: Target, **kw) -> "Installation":
        """The installation of a Target (itself when it is one already)."""
        if isinstance(target, Installation) and not kw:
            return target
        return cls.open(target.data_dir, target.database_url, **kw)

    # -- the layout --
    def path(self, key: str, **parts) -> Path:
        """The path of a LAYOUT entry (placeholders like <version> filled from `parts`)."""
        return layout.path(self.data_dir, key, **parts)

    # -- the settings --
    def resolve(self, name: str) -> Resolved:
        s = BY_NAME[name]
        for source, raw in self._candidates(s):
            if raw is UNSET or raw is None or raw == "":
                continue
            try:
                return Resolved(s.parse(raw), source)
            except ValueError as exc:
                raise SettingInvalid(f"{name} = {raw!r} (from {source}) is not {exc}",
                                     fix=f"Set {where(s)} to {exc}.", setting=name) from None
        default = s.default(self) if callable(s.default) else s.default
        return Resolved(default, "default")

    def get(self, name: str):
        return self.resolve(name).value

    def _candidates(self, s: Setting):
        if s.name in self.flags:
            yield f"flag {s.flag}", self.flags[s.name]
        for env in s.env:
            yield f"environment {env}", self.environ.get(env, UNSET)
        if s.recorded and self.read_recorded:
            rt = self.runtime()
            if rt.alive():
                yield "the running 'erpctl up' (runtime.json)", rt.recorded(s.name)
        if s.toml:
            yield f"{FILES['config'].path} [{s.toml.rsplit('.', 1)[0]}] {s.toml.rsplit('.', 1)[1]}", \
                _dig(self.toml, s.toml)
        if s.legacy:
            yield f"{FILES['backup_settings'].path} {s.legacy}", _dig(self._backup_json(), s.legacy)

    def _backup_json(self) -> Mapping:
        try:
            data = json.loads(self.path("backup_settings").read_text())
            if _dig(data, "s3.secret_access_key") not in (UNSET, None, ""):
                check_private(self.path("backup_settings"))
        except (FileNotFoundError, NotADirectoryError):
            return {}
        except (OSError, ValueError) as exc:
            raise SettingInvalid(f"cannot read {self.path('backup_settings')}: {exc}",
                                 fix="Fix the JSON, or move the settings to erpctl.toml [backup].") from None
        return data if isinstance(data, Mapping) else {}

    def schedule(self, job_id: str, default: str) -> tuple[str, str]:
        """(schedule, where it came from) of a scheduled job: ERPCTL_SCHEDULE_<ID>, [schedule] "<id>", default."""
        env = schedule_env(job_id)
        if self.environ.get(env):
            return self.environ[env], f"environment {env}"
        table = self.toml.get("schedule") or {}
        if job_id in table:
            return str(table[job_id]), f"{FILES['config'].path} [schedule] {job_id!r}"
        return default, "default"

    def section(self, name: str) -> Mapping:
        """A table of erpctl.toml ({} when absent), for settings that are tables ([backup.retention])."""
        table = _dig(self.toml, name)
        return table if isinstance(table, Mapping) else {}

    def recorded_settings(self) -> dict:
        """The values `erpctl up` records in runtime.json (what its probes use)."""
        values = {s.name: self.get(s.name) for s in SETTINGS if s.recorded and s.name != "erp_url"}
        return {k: str(v) if isinstance(v, Path) else v for k, v in values.items()}

    # -- state records --
    def runtime(self) -> RuntimeRecord:
        return self.read_record(RuntimeRecord, tolerant=True) or RuntimeRecord()

    def write_runtime(self, record: RuntimeRecord) -> None:
        self.write_record(record)

    def serving(self) -> ServingRecord | None:
        return self.read_record(ServingRecord, tolerant=True)

    def read_record(self, cls: type[Record], tolerant: bool = False):
        """The record, None when there is none; unreadable JSON raises unless tolerant (then None)."""
        path = self.path(cls.KEY)
        try:
            data = json.loads(path.read_text())
        except (FileNotFoundError, NotADirectoryError):
            return None
        except ValueError:
            if tolerant:
                return None
            raise DataDirProblem(f"{path} is not readable JSON", fix="Restore it, or move it away.") from None
        return cls.from_dict(data, str(path))

    def write_record(self, record: Record) -> None:
        path = self.path(record.KEY)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(record.as_dict(), indent=1, default=str) + "\n")


def environment_only(environ: Mapping[str, str] | None = None) -> Installation:
    """Settings without a data directory (a repository opened by URL alone): flags, environment, defaults."""
    return Installation(Path(os.devnull), "", dict(os.environ) if environ is None else dict(environ))


def where(s: Setting) -> str:
    places = [p for p in (s.flag, *s.env) if p]
    if s.toml:
        places.append(f"[{s.toml.rsplit('.', 1)[0]}] {s.toml.rsplit('.', 1)[1]} in erpctl.toml")
    return " or ".join(places) or s.name


def schedule_env(job_id: str) -> str:
    return SCHEDULE_ENV_PREFIX + "".join(c if c.isalnum() else "_" for c in job_id).upper()


def read_toml(path: Path) -> dict:
    """erpctl.toml ({} when there is none)."""
    try:
        with open(path, "rb") as f:
            table = tomllib.load(f)
        if any(_dig(table, key) not in (UNSET, None, "") for key in TOML_SECRETS):
            check_private(path)
        return table
    except FileNotFoundError:
        return {}
    except (tomllib.TOMLDecodeError, OSError) as exc:
        raise SettingInvalid(f"cannot read {path}: {exc}",
                             fix="Fix the file (TOML: tables such as [backup] with lines like repo = \"...\"), "
                                 "or remove it to use the defaults.") from None


# ---- the document --------------------------------------------------------------------------------

def document() -> str:
    """docs/installation.md: the layout and the settings tables."""
    lines = ["# The installation: data directory and settings", "",
             "Generated from `controlplane/installation.py` by `python -m controlplane.installation > "
             "docs/installation.md`; a test fails when they differ.", "",
             "## Files of the data directory", "",
             "| path | owner module | format | version | what |", "|---|---|---|---|---|"]
    lines += [f"| `{e.path}` | `{e.owner}` | {e.format} | {e.version} | {e.what} |" for e in LAYOUT]
    lines += ["", "## Settings", "",
              "First match wins: the flag, the environment variable, what the running `erpctl up` recorded "
              "(recorded settings only), erpctl.toml (then backup.json for the backup settings), the default. "
              "An invalid value stops the command with exit 2, naming it and its source.", "",
              "| name | flag | env | erpctl.toml | default | type | what |", "|---|---|---|---|---|---|---|"]
    for s in SETTINGS:
        toml = f"`[{s.toml.rsplit('.', 1)[0]}] {s.toml.rsplit('.', 1)[1]}`" if s.toml else "-"
        if s.legacy:
            toml += f" (then backup.json `{s.legacy}`)"
        default = s.default_text or ("-" if s.default is None else f"`{s.default}`")
        env = ", ".join(f"`{e}`" for e in s.env) or "-"
        what = s.what + (" (recorded by `erpctl up`)" if s.recorded else "")
        lines.append(f"| {s.name} | {f'`{s.flag}`' if s.flag else '-'} | {env} | {toml} | {default} | {s.kind} "
                     f"| {what} |")
    lines.append(f"| schedule of job ID | - | `{SCHEDULE_ENV_PREFIX}<ID>` | `[schedule] \"<id>\"` | the job's | "
                 "interval, cron or off | when a scheduled job runs |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(document())
