"""erpctl: the command tree, and the one place where errors become messages and exit codes."""

from __future__ import annotations

import json
import logging
import sys

import click

from erp_core.errors import ErpError

from .. import __version__, logs
from ..errors import EXIT_CODES, ControlPlaneError, Interrupted, database_error
from .lazy import LazyGroup
from .options import Options, json_option, state

log = logging.getLogger("controlplane.cli")
INTERNAL_ERROR = 70


def _version(ctx: click.Context, _param, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    if state(ctx).json:
        click.echo(json.dumps({"name": "erpctl", "version": __version__}))
    else:
        click.echo(f"erpctl {__version__}")
    ctx.exit(0)


def _epilog() -> str:
    codes = "\n".join(f"  {code:>3}  {meaning}" for code, meaning in EXIT_CODES.items())
    return f"\b\nExit codes:\n{codes}"


# The command tree: group -> {command: ("module:attribute" in controlplane.cli, its one-line help)}.
# A command module is imported only when its command runs; --help lists this table
# (tests/controlplane/test_cli.py keeps it in sync with the commands themselves).
GROUPS = {
    "erp": "The ERP's database: migrations, users, demo data, invariant checks, maintenance mode, repairs.",
    "backup": "Backups that are proven to restore: create, list, show, verify, restore, prune, repair.",
    "pitr": "PostgreSQL point-in-time recovery with pgBackRest: setup, backup, status, restore to a time or before "
            "a transaction, verify (each restore proven by the verification ladder).",
    "evidence": "The evidence log: an append-only, hash-chained, signed record of backups, verifications, "
                "restores, drills.",
    "audit": "Reports for auditors: every verification, restore test, upgrade, runbook run and drill in a period.",
    "upgrade": "Staged upgrades: plan, apply, status, resume, rollback, lint.",
    "release": "ERP releases: install a release wheel, list them, show or switch the current one.",
    "field-key": "The field-encryption key: check it, write its escrow copy, recover it from that copy.",
    "fleet": "More than one machine: the inventory's hosts over SSH (strict host keys): status, exec, logs, "
             "ssh-check, trust, deploy (Ansible), failover (PostgreSQL standby).",
    "runbook": "Runbooks: list and show them, run one step by step with a log, resume a paused run, history.",
    "drill": "Scripted emergency drills: run a scenario in a sandbox (fault, detection, runbook, RTO/RPO), abort "
             "one; reports for auditors, approvals, sign-off, findings.",
    "console": "The ops console's own accounts: operators and (read-only) auditors.",
}
COMMANDS: dict[str, dict[str, tuple[str, str]]] = {
    "": {
        "up": ("up:up", "Serve the ERP and the ops console until SIGINT or SIGTERM."),
        "stop": ("stop:stop", "Stop this installation's erpctl up and wait until it has exited."),
        "restart": ("restart:restart", "Stop this installation's erpctl up and start it again exactly as it "
                                       "served, in the background."),
        "settings": ("settings:settings", "Show every setting (backup repository and key, S3, ports, the ERP's URL, "
                                          "probe thresholds...) with its value and source, and every scheduled job's "
                                          "schedule (the running erpctl up's); secrets show as (set)."),
        "status": ("status:status", "Health of the installation: the ERP, firing alerts and failing probes with "
                                    "their runbooks, backups and verifications, the upgrade, the host's headroom."),
    },
    "erp": {
        "migrate": ("erp_migrate:migrate", "Migrate the ERP database to this code's schema revision."),
        "user": ("erp_user:user", "ERP users."),
        "seed": ("erp_seed:seed", "Add demo data: partners, products, price lists, reorder rules and a year of "
                                  "orders, invoices, payments, transfers and a stocktake, all through the ERP's "
                                  "services."),
        "check": ("erp_check:check", "Check the books, the stock and the documents (exit 0 when consistent)."),
        "maintenance": ("erp_maintenance:maintenance", "Switch maintenance mode on or off, or show it (status)."),
        "integrity": ("erp_integrity:integrity_", "Run the database engine's full integrity check: SQLite "
                                                  "integrity_check, PostgreSQL tables, amcheck."),
        "repair": ("erp_repair:repair", "Rebuild derived data from the records it is derived from."),
    },
    "backup": {
        "init": ("backup_init:init", "Create the backup repository."),
        "create": ("backup_create:create", "Back up the ERP database into the repository."),
        "list": ("backup_list:list_", "List the backups (id, time, engine, size, bytes added, schema revision, "
                                      "invariants)."),
        "show": ("backup_show:show", "Show a backup's manifest."),
        "prune": ("backup_prune:prune", "Apply a retention policy: forget the other backups, delete the packs no "
                                        "kept backup needs."),
        "verify": ("backup_verify:verify", "Prove that backups restore: run the verification ladder up to --level "
                                           "(default 3)."),
        "restore": ("backup_restore:restore", "Restore a backup, fail-closed."),
        "repair": ("backup_repair:repair", "Check every chunk, mark the damaged ones for the next backup; say which "
                                           "backups that heals and which are lost."),
    },
    "pitr": {
        "setup": ("pitr_setup:setup", "Set up point-in-time recovery with pgBackRest for the installation's "
                                      "PostgreSQL cluster."),
        "backup": ("pitr_backup:backup", "Take a pgBackRest backup of the cluster; recorded in the evidence log."),
        "status": ("pitr_status:status", "The backups, the WAL archive, archiving failures and the recoverable "
                                         "window."),
        "restore": ("pitr_restore:restore", "Restore to --to TIME or --before-xid XID into a scratch cluster and "
                                            "verify it (nothing live changes)."),
        "verify": ("pitr_verify:verify", "Prove the repository restores: newest backup + archived WAL into a "
                                         "scratch cluster, then the ladder."),
    },
    "evidence": {
        "verify": ("evidence_verify:verify", "Check every record of the evidence log, offline: each record's hash "
                                             "and signature, its link to the one before, the sequence numbers "
                                             "and the head; with --anchors, the anchors too."),
        "public-key": ("evidence_public_key:public_key", "Print (or write to FILE) the public key of this "
                                                         "installation's evidence signing key, for auditors."),
        "check-file": ("evidence_check_file:check_file", "Say whether FILE (a drill report, an artifact) is exactly "
                                                         "a file an evidence record attests, naming the record."),
    },
    "audit": {
        "report": ("audit_report:report", "Summarise every backup verification, restore test, upgrade, runbook run "
                                          "and drill in a period, from the evidence log (chain check on top)."),
    },
    "upgrade": {
        "plan": ("upgrade_plan:plan", "Print each stage with its lock level, estimated rows and time, its rollback "
                                      "method and the point of no return."),
        "apply": ("upgrade_apply:apply", "Upgrade the ERP to a new release, online, in resumable stages."),
        "status": ("upgrade_status:status", "Show the upgrade in progress: its stage, backfill rows/s and ETA, "
                                            "whether the process running it is alive; or the last finished one."),
        "resume": ("upgrade_resume:resume", "Continue the upgrade from its last finished stage (a backfill from its "
                                            "last checkpoint)."),
        "rollback": ("upgrade_rollback:rollback", "Before contract: migrate the schema down to the old release's "
                                                  "and serve it again, keeping every row."),
        "lint": ("upgrade_lint:lint", "Check migrations against the staged-upgrade rules, without running them."),
    },
    "release": {
        "install": ("release_install:install", "Install the ERP release in WHEEL "
                                               "(erp_controlplane-<version>-py3-none-any.whl) offline, into "
                                               "<data dir>/releases/<version>, in its own environment built on "
                                               "erpctl's Python and packages."),
        "list": ("release_list:list_", "List the installed releases (version, schema head, install time, wheel); "
                                       "* marks the current one."),
        "current": ("release_current:current", "Show the current release, or make VERSION current."),
        "keygen": ("release_keygen:keygen", "Make a release signing key: KEY (private, mode 0600, never "
                                            "overwritten; keep it where releases are built) and KEY.pub (public: "
                                            "copy it into each installation's trusted keys, <data "
                                            "dir>/release-keys/ by default)."),
        "sign": ("release_sign:sign", "Sign the release WHEEL where releases are built: write WHEEL.sig (Ed25519 "
                                      "over its name and sha256), which 'erpctl release install' checks against "
                                      "the installation's trusted keys."),
        "remove": ("release_remove:remove", "Remove the installed release VERSION (its directory and environment) "
                                            "to free disk space."),
    },
    "field-key": {
        "check": ("field_key_check:check", "Check that the field key in use decrypts the stored encrypted fields "
                                           "and that its escrow copy holds it."),
        "escrow": ("field_key_escrow:escrow_", "Write the escrow copy of the field key, sealed with a passphrase "
                                               "and/or to an RSA public key."),
        "recover": ("field_key_recover:recover", "Recover the field key from its escrow copy, once proven to "
                                                 "decrypt the stored fields."),
        "rewrap": ("field_key_rewrap:rewrap", "Re-encrypt release 1.0's encrypted fields bound to their table, "
                                              "column and row (after the upgrade's contract step)."),
        "reveal": ("field_key_reveal:reveal", "Show an audit log entry's encrypted values (old and new bank "
                                              "account) in clear, for an auditor; the reveal is audited."),
    },
    "fleet": {
        "status": ("fleet_status:status", "Each host: its roles, whether it answers, its load, free disk in erp_root "
                                          "and current release."),
        "exec": ("fleet_exec:exec_", "Run COMMAND (a shell command) on each host, in its erp_root; per-host exit "
                                     "codes and output."),
        "logs": ("fleet_logs:logs", "The last lines of the erpctl up log in each host's erp_root."),
        "ssh-check": ("fleet_ssh_check:ssh_check", "Log in to each host over SSH: its key checked against the "
                                                   "known-hosts file, key-based login."),
        "deploy": ("fleet_deploy:deploy", "Run a playbook (site.yml by default) on the fleet with ansible-playbook: "
                                          "strict host keys, key login."),
        "failover": ("fleet_failover:failover", "Promote the streaming standby to primary and repoint the app hosts "
                                                "at it (--check: measure the lag only)."),
        "upgrade": ("fleet_upgrade:upgrade", "Upgrade the app hosts to release VERSION, one at a time behind HAProxy "
                                             "(upgrade.yml)."),
        "trust": ("fleet_trust:trust", "Record HOST's key in the known-hosts file when it matches --fingerprint "
                                       "(a changed key replaced)."),
        "backup": ("fleet_backup:backup", "Back up the fleet's database once, through the first app host, and "
                                          "verify it (backup.yml)."),
        "restore": ("fleet_restore:restore", "Restore backup ID (default: the latest) to the fleet's database behind "
                                             "HAProxy (restore.yml)."),
        "prometheus-config": ("fleet_prometheus_config:prometheus_config", "Prometheus scrape jobs from the inventory: "
                              "each app host's ERP and erpctl /metrics, the load balancer's HAProxy exporter."),
        "drill": ("fleet_drill:drill_", "Run drill SCENARIO on one app host (drill.yml) and fetch its reports back."),
        "rotate-secrets": ("fleet_rotate_secrets:rotate_secrets", "Rotate the fleet's secrets, one app host at a time, "
                                                                  "without downtime (rotate-secrets.yml)."),
    },
    "runbook": {
        "list": ("runbook_list:list_", "List the runbooks (name, title, severity, alerts)."),
        "show": ("runbook_show:show", "Show a runbook's steps with their commands (confirm: asks before running; "
                                      "manual: people's work)."),
        "run": ("runbook_run:run", "Run a runbook step by step, with a log."),
        "resume": ("runbook_resume:resume", "Go on with a paused or interrupted runbook run, with the parameters it "
                                            "started with."),
        "history": ("runbook_history:history", "List the runbook runs of this data directory, newest first: "
                                               "runbook, status (running, interrupted, waiting-confirmation, "
                                               "waiting-manual, failed, recovered, not-recovered), step, findings, "
                                               "operator."),
    },
    "drill": {
        # reports, approvals, sign-off, findings, list (controlplane/drills/report.py, approvals.py, review.py)
        "report": ("drill_report:report", "Write a drill's report for auditors: scenario, objectives, timeline, "
                                          "RTO/RPO against targets, checks, findings, sign-offs, hashes."),
        "approve": ("drill_approve:approve", "Record an approval of a live drill of SCENARIO (two people other than "
                                             "the operator must approve)."),
        "sign-off": ("drill_signoff:sign_off", "Sign a finished drill off (recorded in its record and the evidence "
                                               "log)."),
        "finding": ("drill_finding:finding", "Add a finding to a finished drill, with its remediation item "
                                             "(--action, --owner, --due); or mark a finding's remediation done "
                                             "(done --finding F1)."),
        "list": ("drill_list:list_", "List the drills, newest first: scenario, state, start, detection/RTO/RPO "
                                     "measured against target, sign-offs."),
        "run": ("drill_run:run", "Run a drill scenario (runbooks/drills/SCENARIO.yaml) in a sandbox of its own."),
        "abort": ("drill_abort:abort", "Stop the running drill of this data directory at once (SIGTERM: it runs its "
                                       "clean-up; SIGKILL and the clean-up here when it does not end in time)."),
        "scenarios": ("drill_scenarios:scenarios", "List the drill scenarios (runbooks/drills/*.yaml), each validated: "
                                                   "name, fault, runbook, objectives."),
    },
    "console": {
        "user": ("console_user:user", "The ops console's accounts: operators (read, start actions) and auditors "
                                      "(read only)."),
    },
}


@click.group(cls=LazyGroup, lazy=COMMANDS[""],
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
             epilog=_epilog())
@json_option
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_version,
              help="Print the version and exit.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
              default="info", show_default=True, envvar="ERPCTL_LOG_LEVEL",
              help="Logs go to stderr, as JSON lines when stderr is not a terminal. [env ERPCTL_LOG_LEVEL]")
def cli(log_level: str) -> None:
    """erpctl: run and operate the ERP (erp_core) and its control plane."""
    logs.setup(log_level)


for _name, _help in GROUPS.items():
    cli.add_command(LazyGroup(_name, help=_help, lazy=COMMANDS[_name]))


def _fail(opts: Options, exc: ErpError) -> None:
    """A typed error: its message and fix on stderr, its exit code."""
    if opts.json:
        click.echo(json.dumps({"error": exc.to_problem(), "exit_code": exc.exit_code}, default=str), err=True)
    else:
        click.echo(f"erpctl: error: {exc.detail}", err=True)
        if exc.fix:
            click.echo(f"  fix: {exc.fix}", err=True)
    sys.exit(exc.exit_code)


def _database_unavailable(exc: Exception) -> ControlPlaneError | None:
    """SQLAlchemy's OperationalError as a typed error (errors.database_error: a full disk or a database
    that does not answer). SQLAlchemy is imported only by the commands that use a database: an error
    of its kind can only come when it is loaded."""
    sa_exc = sys.modules.get("sqlalchemy.exc")
    if sa_exc is None or not isinstance(exc, sa_exc.OperationalError):
        return None
    return database_error(exc)


def main(argv: list[str] | None = None) -> None:
    opts = Options()
    try:
        rv = cli.main(args=argv, prog_name="erpctl", obj=opts, standalone_mode=False)
    except ErpError as exc:
        _fail(opts, exc)
    except click.exceptions.Abort:
        _fail(opts, Interrupted("interrupted", fix="Run the command again."))
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        _fail(opts, Interrupted("interrupted", fix="Run the command again."))
    except BrokenPipeError:
        sys.exit(1)
    except Exception as exc:  # noqa: BLE001 - the last resort: log it, say so, distinct exit code
        if (unavailable := _database_unavailable(exc)) is not None:
            _fail(opts, unavailable)
        log.exception("unexpected error")
        click.echo(f"erpctl: internal error: {exc.__class__.__name__}: {exc}", err=True)
        click.echo("  fix: this is a bug; the log above has the details. Report it with the command you ran.",
                   err=True)
        sys.exit(INTERNAL_ERROR)
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    main()
