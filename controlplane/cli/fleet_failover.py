"""erpctl fleet failover: promote the streaming standby, fence the old primary, repoint the app hosts,
and say what could have been lost (--check: measure the lag only, and record it)."""

from __future__ import annotations

import click

from ..pitr import failover as fo
from .fleet_common import fleet_options, installation
from .options import emit, json_option, target_options


def _loss_line(loss: dict) -> str:
    if loss["synchronous"]:
        return (f"synchronous standby ({loss['measured']}): no acknowledged write lost "
                f"({loss['lag_bytes']} bytes of WAL not yet replayed, all unacknowledged)")
    if loss["lag_transactions"] is None:
        return f"loss window unknown: lag measured {loss['measured']}"
    return (f"asynchronous standby ({loss['measured']}): up to {loss['acknowledged_writes_at_risk']} acknowledged "
            f"transaction(s), {loss['lag_bytes']} bytes of WAL, may be lost")


@click.command(name="failover")
@target_options
@fleet_options
@click.option("--standby", metavar="HOST", help="The database host to promote (default: the inventory's standby).")
@click.option("--force", is_flag=True, help="Fail over although the primary still answers: it is fenced first "
                                            "(read-only, sessions ended, stopped when local).")
@click.option("--check", "check_only", is_flag=True, help="Only measure the standby's lag (bytes, transactions, "
                                                           "synchronous or not) and record it; promote nothing.")
@click.option("--timeout", type=float, default=120.0, show_default=True, metavar="SECONDS",
              help="Time the promotion and the first write may take.")
@json_option
def failover(data_dir, database_url, limit, standby, force, check_only, timeout, **fleet_opts):
    """Promote the streaming standby to primary and repoint the app hosts at it (--check: measure the lag only)."""
    inst = installation(data_dir, database_url, **fleet_opts)
    if check_only:
        m = fo.check(inst, standby)
        emit(m, f"{m['standby']} behind {m['primary']}: {m['lag_bytes']} bytes, {m['lag_transactions']} "
                f"transaction(s); {'synchronous' if m['synchronous'] else 'asynchronous'} "
                f"(sync_state {m['sync_state']}, synchronous_commit {m['synchronous_commit']}); "
                f"acknowledged writes at risk: {m['acknowledged_writes_at_risk']}")
        return
    out = fo.failover(inst, standby, force, timeout)
    head = (f"{out['new_primary']} promoted in {out['promote_seconds']} s, first write after "
            f"{out['first_write_seconds']} s; old primary {out['old_primary']}: {out['fence']}")
    lines = [head, _loss_line(out["loss"])]
    lines += [f"  app host {r['host']:<14}{r['outcome']:<11}{r.get('new_url') or r.get('error')}"
              for r in out["app_hosts"]]
    lines.append("Next: restart the ERP on the app hosts (erpctl fleet exec 'erpctl restart' --limit app).")
    if not out["ok"]:
        failed = [f"{r['host']} ({r.get('error')})" for r in out["app_hosts"] if r["outcome"] != "repointed"]
        raise fo.FailoverFailed(f"{out['new_primary']} was promoted but app host(s) could not be repointed: "
                                f"{'; '.join(failed)}", fix="Set [database] url in their erpctl.toml by hand, "
                                "or fix what is named and run 'erpctl fleet failover' again.", result=out)
    emit(out, "\n".join(lines))
