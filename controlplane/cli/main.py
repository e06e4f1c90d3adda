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
    "evidence": "The evidence log: an append-only, hash-chained record of backups, verifications, restores, drills.",
    "upgrade": "Staged upgrades: plan, apply, status, resume, rollback, lint.",
    "release": "ERP releases: install a release wheel, list them, show or switch the current one.",
    "runbook": "Runbooks: list and show them, run one step by step with a log, resume a paused run, history.",
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
    "evidence": {
        "verify": ("evidence_verify:verify", "Check every record of the evidence log, offline: each record's hash, "
                                             "its link to the one before, the sequence numbers and the head."),
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
        "remove": ("release_remove:remove", "Remove the installed release VERSION (its directory and environment) "
                                            "to free disk space."),
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
