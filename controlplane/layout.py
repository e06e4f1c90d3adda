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
    Entry("field_key_replaced", "field.key.replaced-<at>", "controlplane/escrow.py", "text, base64, mode 0600", "-",
          "a field key that 'erpctl field-key recover --yes' replaced (kept, never read)"),
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
    Entry("evidence_public_keys", "evidence.pub", "controlplane/evidence_keys.py", "PEM public keys", "-",
          "the public key of every key that signed evidence records (the private key is kept outside: "
          "setting evidence_key_file)"),
    Entry("runbook_runs", "runbook-runs/", "controlplane/runbook/records.py", "directory, mode 0700", "-",
          "runbook runs ('erpctl runbook run', resume, history)"),
    Entry("runbook_run", "runbook-runs/<run>.json", "controlplane/runbook/records.py", "JSON record", "1",
          "a runbook run: its runbook, parameters, status, the step it is at, each finished step's commands, "
          "exit codes and output digests (written after every step: a killed run resumes at its step)"),
    Entry("runbook_run_lock", "runbook-runs/<run>.lock", "controlplane/runbook/records.py", "flock", "-",
          "held by the process running that run (a running record nobody holds was interrupted)"),
    Entry("drills", "drills/", "controlplane/drills/record.py", "directory", "-",
          "drills ('erpctl drill run'), one directory each"),
    Entry("drill", "drills/<id>/", "controlplane/drills/record.py", "directory", "-",
          "a drill: its record, its artifacts (workload log, runbook run output, reports) and, while it runs, "
          "its sandbox"),
    Entry("drill_record", "drills/<id>/record.json", "controlplane/drills/record.py", "JSON record", "1",
          "a drill: scenario, objectives declared before the fault, timeline, measured detection/RTO/RPO, "
          "checks, findings, approvals, sign-offs, artifacts' sha256 (written at every phase change)"),
    Entry("drill_workload", "drills/<id>/workload.jsonl", "controlplane/drills/workload.py", "JSON lines", "-",
          "every write the sandbox's ERP API acknowledged during the drill (kind, id, time) and every failure"),
    Entry("drill_sandbox", "drills/<id>/sandbox/", "controlplane/drills/sandbox.py", "directory", "-",
          "the drill's sandbox: its own data directory and erpctl up (removed by the clean-up unless --keep)"),
    Entry("drill_active", "drills/active.json", "controlplane/drills/state.py", "JSON record", "1",
          "the running drill: its id, pid and start time, sandbox ports and scratch database (for abort and "
          "for the clean-up of a killed drill)"),
    Entry("drill_lock", "drills/.lock", "controlplane/drills/state.py", "flock", "-", "one drill at a time"),
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
    Entry("release_keys", "release-keys/", "operator", "PEM Ed25519 public keys (*.pub, *.pem)", "-",
          "the public keys whose release signatures 'erpctl release install' trusts (the default of the "
          "release_trusted_keys setting)"),
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
    Entry("fleet", "fleet/", "controlplane/remote/inventory.py", "directory", "-",
          "the fleet: the hosts erpctl fleet and the playbooks act on"),
    Entry("fleet_inventory", "fleet/inventory.yml", "controlplane/remote/inventory.py",
          "Ansible YAML inventory (operator-written)", "-",
          "hosts and their roles (groups app, database, loadbalancer, backup); 'ansible-inventory -i' reads it"),
    Entry("fleet_known_hosts", "fleet/known_hosts", "controlplane/remote/hostkeys.py", "OpenSSH known_hosts", "-",
          "the fleet's trusted host keys ('erpctl fleet trust' adds one; ssh and Ansible check against it)"),
    Entry("fleet_ssh_control", "fleet/ssh/", "controlplane/remote/playbook.py", "directory, mode 0700 (Unix sockets)",
          "-", "ssh's master connections during a playbook run (ControlPath, one socket per host), closed at its end"),
    Entry("serving", "releases/serving.json", "controlplane/release/supervisor.py", "JSON record", "1",
          "the release the running 'erpctl up' serves"),
    Entry("drill_record_lock", "drills/<id>/.record.lock", "controlplane/drills/review.py", "flock", "-",
          "serialises sign-offs and findings added to a drill's record"),
    Entry("drill_report", "drills/<id>/report-<lang>.<format>", "controlplane/drills/report.py",
          "HTML (self-contained) | JSON | PDF", "1",
          "a drill's report for auditors ('erpctl drill report'); its sha256 is in the evidence log"),
    Entry("drill_approvals", "drills/approvals.json", "controlplane/drills/approvals.py", "JSON record", "1",
          "approvals of live drills ('erpctl drill approve'): scenario, approver, window, comment, evidence "
          "record; each expires with its window"),
    Entry("drill_approvals_lock", "drills/.approvals.lock", "controlplane/drills/approvals.py", "flock", "-",
          "serialises approvals"),
    Entry("console_users", "console-users.json", "controlplane/console/users.py", "JSON record, mode 0600", "1",
          "the ops console's own accounts ('erpctl console user add'): name, role (operator or auditor), argon2id "
          "password hash, language"),
    Entry("console_users_lock", ".console-users.lock", "controlplane/console/users.py", "flock", "-",
          "serialises changes to the console's accounts"),
    Entry("console_secret", "console-session.key", "controlplane/console/users.py", "text, mode 0600", "-",
          "the key that signs the ops console's session cookies (made on first use)"),
    Entry("console_jobs", "console-jobs/", "controlplane/console/jobs.py", "directory, mode 0700", "-",
          "actions started from the ops console (backup, verification, upgrade step, drill)"),
    Entry("console_job", "console-jobs/<id>.json", "controlplane/console/jobs.py", "JSON record", "1",
          "an action started from the console: who, when, the erpctl command, its pid and exit code"),
    Entry("console_job_log", "console-jobs/<id>.log", "controlplane/console/jobs.py", "text", "-",
          "that erpctl command's output"),
    Entry("pitr", "pitr.json", "controlplane/pitr/config.py", "JSON record", "1",
          "point-in-time recovery: the PostgreSQL cluster (data directory, port, socket, OS user, binaries) and "
          "pgBackRest's stanza and directory ('erpctl pitr setup')"),
    Entry("failover", "fleet/failover.json", "controlplane/pitr/failover.py", "JSON record", "1",
          "the last replication check and the last failover: primary, standby, lag in bytes and transactions"),
    Entry("fleet_drills", "fleet/drills/", "controlplane/remote/drill.py", "directory", "-",
          "drills run on the fleet's hosts ('erpctl fleet drill'), their reports fetched back, one directory a host"),
    Entry("fleet_drill", "fleet/drills/<host>/<id>/", "controlplane/remote/drill.py", "directory", "-",
          "a drill run on <host>: its record.json and reports (report-en.json, report-en.html) and a copy of the "
          "host's evidence log (evidence/) that attests them, as fetched"),
    Entry("fleet_secrets", "fleet/secrets.yml", "controlplane/remote/rotate.py", "YAML variables, mode 0600", "-",
          "secrets 'erpctl fleet rotate-secrets' rotated (erp_probe_password): passed to every play as extra "
          "variables, over the inventory's values"),
    Entry("fleet_secrets_pending", "fleet/secrets.pending.yml", "controlplane/remote/rotate.py",
          "YAML variables, mode 0600", "-",
          "the new secrets of a rotation not finished yet (the next 'erpctl fleet rotate-secrets' resumes with them)"),
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
