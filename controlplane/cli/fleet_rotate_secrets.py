"""erpctl fleet rotate-secrets: rotate the fleet's secrets one app host at a time without downtime
(playbooks/rotate-secrets.yml); what cannot be rotated safely is refused with how to do it by hand."""

from __future__ import annotations

import click

from ..remote import rotate
from .fleet_common import fleet_options, installation
from .fleet_deploy import render as render_recap
from .options import emit, json_option, state, target_options


def render(out: dict) -> str:
    lines = [render_recap(out)]
    if out["rotated"]:
        lines.append(f"rotated: {', '.join(out['rotated'])} on every app host"
                     f"{' (a rotation left unfinished, resumed)' if out['resumed'] else ''}")
    elif out["pending"]:
        lines.append("NOT finished: run 'erpctl fleet rotate-secrets --yes' again to resume with the same new values")
    return "\n".join(lines)


@click.command(name="rotate-secrets")
@target_options
@fleet_options
@json_option
@click.option("--secret", "names", multiple=True, type=click.Choice([*rotate.SUPPORTED, *rotate.BY_HAND]),
              help=f"A secret to rotate (repeat it). Default: {', '.join(rotate.SUPPORTED)}. The others are refused "
                   "(exit 59) with how to rotate them by hand.")
@click.option("--yes", is_flag=True, help="Rotate: the old values stop working.")
@click.option("--playbooks-dir", metavar="DIR", help="The Ansible project. Default: the playbooks shipped with "
                                                     "erpctl. [env ERPCTL_FLEET_PLAYBOOKS_DIR]")
def rotate_secrets(data_dir, database_url, limit, names, yes, playbooks_dir, **fleet_opts):
    """Rotate the fleet's secrets, one app host at a time, without downtime (rotate-secrets.yml).

    probe-password: the business probe's password, new in the database once, then on each host, proven by a
    login there; the old one is refused. The new values are kept in fleet/secrets.yml (mode 0600) and given to
    every later play over the inventory's. field-key, database-url and backup-passphrase cannot be rotated
    safely: refused (exit 59) before anything changes, with how to rotate them by hand. Recorded in the
    evidence log (fleet_rotate_secrets: which secrets, hosts, outcome; never a value). Run it again after a
    failure: it resumes with the same new values.
    """
    if not yes:
        raise click.UsageError("rotating makes the old secrets stop working: pass --yes")
    if limit:
        raise click.BadParameter("secrets are rotated on every app host: --limit would leave some on the old "
                                 "ones", param_hint="--limit")
    inst = installation(data_dir, database_url, playbooks_dir=playbooks_dir, **fleet_opts)
    out, failed = rotate.run(inst, list(names) or list(rotate.SUPPORTED), echo=not state().json)
    if not state().json:
        out.pop("output")
    emit({**out, "ok": failed is None, "exit_code": failed.exit_code if failed else 0}, render(out))
    if failed is not None:
        raise failed
