"""Every file and directory the control plane keeps in the data directory: its path, the module that
writes it, its format and its version. The one place that names them: code asks for a path with
`path(data_dir, key)` (or `Installation.path(key)`); docs/installation.md is generated from this
table and a test fails when they differ, or when another module spells one of these file names.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Entry:
    """One file or directory of the data directory."""

    key: str
    path: str          # relative to the data directory; a trailing "/" marks a directory
    owner: str         # the module that writes it
    format: str
    version: str       # the format's version ("-" when it has none)
    what: str


LAYOUT: tuple[Entry, ...] = (
    Entry("config", "erpctl.toml", "controlplane/installation.py", "TOML (operator-written)", "-",
          "operator settings (the SETTINGS table)"),
    Entry("backup_settings", "backup.json", "controlplane/installation.py", "JSON (operator-written)", "-",
          "older backup settings: {\"repo\", \"s3\": {...}}; erpctl.toml [backup] comes first"),
    Entry("database", "erp.sqlite3", "erp_core/db.py", "SQLite (+ -wal, -shm)", "schema revision",
          "the ERP's database when no database URL is set"),
    Entry("field_key", "field.key", "controlplane/config.py", "text, base64, mode 0600", "-",
          "the field-encryption key (unless ERP_FIELD_KEY is set)"),
    Entry("demo_login", "demo-login.json", "controlplane/config.py", "JSON, mode 0600", "-",
          "the demo admin's login after 'erpctl up --demo'"),
    Entry("probe_login", "probe-login.json", "controlplane/monitoring/credentials.py", "JSON, mode 0600", "-",
          "the business probe's service user"),
    Entry("webhook_token", "alert-webhook.token", "controlplane/monitoring/credentials.py", "text, mode 0600",
          "-", "bearer token of the Alertmanager webhook"),
    Entry("alerts", "alerts.json", "controlplane/monitoring/alerts.py", "JSON", "-", "firing alerts"),
    Entry("alerts_lock", ".alerts.lock", "controlplane/monitoring/alerts.py", "flock", "-",
          "serialises alerts.json updates"),
    Entry("results", "results.json", "controlplane/results.py", "JSON record", "2",
          "latest result per operation kind (version 1, without a version, was the map of results alone)"),
    Entry("results_lock", ".results.lock", "controlplane/results.py", "flock", "-",
          "serialises results.json updates"),
    Entry("runtime", "runtime.json", "controlplane/monitoring/service.py", "JSON record", "2",
          "what the last 'erpctl up' serves and how it was started (pid and its start time, host, ports, "
          "database URL without its password, URLs, recorded settings)"),
    Entry("up_log", "erpctl-up.log", "controlplane/lifecycle/restart.py", "JSON lines (+ erpctl up's output)", "-",
          "the output of an 'erpctl up' that 'erpctl restart' started in the background (appended)"),
    Entry("lifecycle_lock", ".lifecycle.lock", "controlplane/lifecycle/stop.py", "flock", "-",
          "one 'erpctl stop' or 'erpctl restart' at a time"),
    Entry("evidence", "evidence.jsonl", "controlplane/evidence.py", "JSON lines, hash-chained", "-",
          "the evidence log"),
    Entry("evidence_head", "evidence.head", "controlplane/evidence.py", "JSON", "-", "the chain's head"),
    Entry("evidence_lock", ".evidence.lock", "controlplane/evidence.py", "flock", "-", "serialises appends"),
    Entry("runbook_runs", "runbook-runs/", "controlplane/runbook/records.py", "directory, mode 0700", "-",
          "runbook runs ('erpctl runbook run', resume, history)"),
    Entry("runbook_run", "runbook-runs/<run>.json", "controlplane/runbook/records.py", "JSON record", "1",
          "a runbook run: its runbook, parameters, status, the step it is at, each finished step's commands, "
          "exit codes and output digests (written after every step: a killed run resumes at its step)"),
    Entry("runbook_run_lock", "runbook-runs/<run>.lock", "controlplane/runbook/records.py", "flock", "-",
          "held by the process running that run (a running record nobody holds was interrupted)"),
    Entry("backups", "backups/", "controlplane/backup/repository.py", "backup repository", "repository config",
          "the default backup repository (file://<data dir>/backups)"),
    Entry("snapshot_tmp", ".erpctl-backup-<pid>-<random>", "controlplane/backup/snapshot.py", "SQLite copy", "-",
          "a backup's temporary snapshot (removed when the backup ends)"),
    Entry("scratch", "scratch/", "controlplane/backup/verify.py", "directory", "-",
          "scratch copies of restore tests and L3/L4 verifications"),
    Entry("restore", "restore/", "controlplane/backup/restore.py", "directory", "-", "the restore's state"),
    Entry("restore_state", "restore/state.json", "controlplane/backup/restore.py", "JSON record", "1",
          "the running or last restore"),
    Entry("restore_lock", "restore/.lock", "controlplane/backup/restore.py", "flock", "-", "one restore at a time"),
    Entry("restores", "restores/", "controlplane/backup/loss.py", "directory", "-",
          "what each in-place restore discarded"),
    Entry("restore_discarded", "restores/<run>-discarded.json", "controlplane/backup/loss.py", "JSON", "1",
          "the writes made since the backup that an in-place restore discarded (kind, id, document number, "
          "action, user, time), for the business; its sha256 is in the restore's evidence record"),
    Entry("upgrade", "upgrade/", "controlplane/upgrade/state.py", "directory", "-", "the upgrade's state"),
    Entry("upgrade_state", "upgrade/state.json", "controlplane/upgrade/state.py", "JSON record", "1",
          "the upgrade in progress"),
    Entry("upgrade_history", "upgrade/history/", "controlplane/upgrade/state.py", "JSON records", "1",
          "finished upgrades, <started>-<id>.json"),
    Entry("upgrade_lock", "upgrade/lock", "controlplane/upgrade/state.py", "flock + pid", "-",
          "one upgrade operation at a time"),
    Entry("releases", "releases/", "controlplane/release/store.py", "directory", "-",
          "installed releases, one directory (and venv) each"),
    Entry("release_info", "releases/<version>/release.json", "controlplane/release/store.py", "JSON", "-",
          "a release's wheel, schema head and environment"),
    Entry("release_current", "releases/current", "controlplane/release/switch.py", "symlink", "-",
          "the current release, switched atomically (through .current.<pid>.tmp)"),
    Entry("releases_lock", "releases/.lock", "controlplane/release/store.py", "flock", "-",
          "serialises installs, switches and removals"),
    Entry("release_env", "releases/<version>/env/", "controlplane/release/install.py", "Python venv", "-",
          "a release's own environment"),
    Entry("release_tmp", "releases/.install-<version>.<pid>.<random>/", "controlplane/release/install.py",
          "directory", "-", "a release being installed or removed (cleared by the next release command)"),
    Entry("serving", "releases/serving.json", "controlplane/release/supervisor.py", "JSON record", "1",
          "the release the running 'erpctl up' serves"),
)
FILES: dict[str, Entry] = {e.key: e for e in LAYOUT}


def name(key: str) -> str:
    """The path of an entry relative to the data directory (directories without their trailing "/")."""
    return FILES[key].path.rstrip("/")


def basename(key: str) -> str:
    """The last part of an entry's path (for code that already holds its directory)."""
    return Path(name(key)).name


def path(data_dir, key: str, **parts) -> Path:
    """The path of an entry in `data_dir` (placeholders like <version> filled from `parts`)."""
    rel = name(key)
    for placeholder, value in parts.items():
        rel = rel.replace(f"<{placeholder}>", str(value))
    return Path(data_dir) / rel
