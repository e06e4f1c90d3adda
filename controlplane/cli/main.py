"""erpctl: the command tree, and the one place where errors become messages and exit codes."""

from __future__ import annotations

import json
import logging
import sys

import click
from sqlalchemy.exc import OperationalError

from erp_core.errors import ErpError

from .. import __version__, logs
from ..errors import EXIT_CODES, DatabaseUnavailable, Interrupted
from . import (backup_create, backup_init, backup_list, backup_prune, backup_show, erp_check, erp_maintenance,
               erp_migrate, erp_seed, erp_user, status, up)
from . import backup_restore, backup_verify, evidence_verify
from . import release_current, release_install, release_list, release_remove
from . import settings
from . import upgrade_apply, upgrade_lint, upgrade_plan, upgrade_resume, upgrade_rollback, upgrade_status
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


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
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


@cli.group()
def erp() -> None:
    """The ERP's database: migrations, users, demo data, invariant checks, maintenance mode."""


@cli.group()
def backup() -> None:
    """Backups that are proven to restore: create, list, show, verify, restore, prune."""


@cli.group()
def evidence() -> None:
    """The evidence log: an append-only, hash-chained record of backups, verifications, restores, drills."""


@cli.group()
def upgrade() -> None:
    """Staged upgrades: plan, apply, status, resume, rollback, lint."""


@cli.group()
def release() -> None:
    """ERP releases: install a release wheel, list them, show or switch the current one."""


cli.add_command(up.up)
cli.add_command(settings.settings)
release.add_command(release_install.install)
release.add_command(release_list.list_)
release.add_command(release_current.current)
release.add_command(release_remove.remove)
upgrade.add_command(upgrade_plan.plan)
upgrade.add_command(upgrade_apply.apply)
upgrade.add_command(upgrade_status.status)
upgrade.add_command(upgrade_resume.resume)
upgrade.add_command(upgrade_rollback.rollback)
upgrade.add_command(upgrade_lint.lint)
evidence.add_command(evidence_verify.verify)
cli.add_command(status.status)
backup.add_command(backup_init.init)
backup.add_command(backup_create.create)
backup.add_command(backup_list.list_)
backup.add_command(backup_show.show)
backup.add_command(backup_prune.prune)
backup.add_command(backup_verify.verify)
backup.add_command(backup_restore.restore)
erp.add_command(erp_migrate.migrate)
erp.add_command(erp_user.user)
erp.add_command(erp_seed.seed)
erp.add_command(erp_check.check)
erp.add_command(erp_maintenance.maintenance)


def _fail(opts: Options, exc: ErpError) -> None:
    """A typed error: its message and fix on stderr, its exit code."""
    if opts.json:
        click.echo(json.dumps({"error": exc.to_problem(), "exit_code": exc.exit_code}, default=str), err=True)
    else:
        click.echo(f"erpctl: error: {exc.detail}", err=True)
        if exc.fix:
            click.echo(f"  fix: {exc.fix}", err=True)
    sys.exit(exc.exit_code)


def main(argv: list[str] | None = None) -> None:
    opts = Options()
    try:
        rv = cli.main(args=argv, prog_name="erpctl", obj=opts, standalone_mode=False)
    except ErpError as exc:
        _fail(opts, exc)
    except OperationalError as exc:
        _fail(opts, DatabaseUnavailable(f"the database did not answer: {str(exc.orig).strip()}",
                                        fix="Check that the database server runs and that --database-url "
                                            "(or ERPCTL_DATABASE_URL) points at it; see runbooks/."))
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
        log.exception("unexpected error")
        click.echo(f"erpctl: internal error: {exc.__class__.__name__}: {exc}", err=True)
        click.echo("  fix: this is a bug; the log above has the details. Report it with the command you ran.",
                   err=True)
        sys.exit(INTERNAL_ERROR)
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    main()
