"""erpctl fleet drill SCENARIO: a drill on one app host (playbooks/drill.yml), its signed reports fetched back
to this installation and checked; the measured figures, recorded in the evidence log (fleet_drill)."""

from __future__ import annotations

import click

from ..remote import drill
from .fleet_common import fleet_options, installation
from .fleet_deploy import render as render_recap
from .options import emit, json_option, state, target_options


def render(out: dict) -> str:
    lines = [render_recap(out)]
    d = out["drill"]
    if d is None:
        return "\n".join(lines + ["no drill report was fetched"])
    m = d["measured"]
    lines.append(f"drill {d['drill']} ({d['scenario']}) on {d['host']}: {d['state']}")
    lines.append(f"  detection {m['detection_seconds']} s, RTO {m['rto_seconds']} s, RPO {m['rpo_writes_lost']} "
                 f"write(s) / {m['rpo_seconds']} s, {m['acknowledged_writes']} acknowledged writes")
    attested = sum(r["attested"] for r in d["reports"])
    lines.append(f"  reports: {d['directory']} ({attested}/{len(d['reports'])} attested by the host's evidence log "
                 f"of {d['evidence_records']} signed record(s)): " + ("verified" if d["verified"] else "NOT VERIFIED"))
    return "\n".join(lines)


@click.command(name="drill")
@click.argument("scenario")
@target_options
@fleet_options
@json_option
@click.option("--host", metavar="HOST", help="The app host to run it on. Default: the first of the app group.")
@click.option("--fresh", is_flag=True, help="Seed the sandbox from scratch instead of restoring the host's latest "
                                            "backup into it.")
@click.option("--scale", type=click.IntRange(0, 1000), help="With --fresh: the demo data's scale (0: none).")
@click.option("--detect", type=click.Choice(["auto", "probes", "prometheus"]), help="As 'erpctl drill run --detect'.")
@click.option("--alert-for", type=click.FloatRange(0, 3600), metavar="SECONDS",
              help="Shorten the expected alert's `for` (the report says so).")
@click.option("--live", is_flag=True, help="On the host's own installation (erp-killed, erp-hung only), with the two "
                                           "approvals 'erpctl drill approve' recorded on that host; refused there "
                                           "otherwise, before any fault.")
@click.option("--playbooks-dir", metavar="DIR", help="The Ansible project. Default: the playbooks shipped with "
                                                     "erpctl. [env ERPCTL_FLEET_PLAYBOOKS_DIR]")
def drill_(scenario, data_dir, database_url, limit, host, fresh, scale, detect, alert_for, live, playbooks_dir,
           **fleet_opts):
    """Run drill SCENARIO on one app host (drill.yml) and fetch its reports back.

    'erpctl drill run SCENARIO' runs there in its own sandbox (the host's production data is never touched;
    --live only as 'erpctl drill run --target live' allows). Its record, its reports (JSON, HTML) and a copy
    of the host's evidence log are fetched into fleet/drills/HOST/ID/ of this data directory and checked:
    the host's chain and signatures intact, each report attested in it. Prints the measured detection time,
    RTO and RPO. Recorded in the evidence log (fleet_drill). Exit 58 when the drill failed or its report
    does not verify.
    """
    if limit:
        raise click.BadParameter("the drill runs on one host: use --host", param_hint="--limit")
    args = (["--fresh"] if fresh else []) + (["--scale", str(scale)] if scale is not None else [])
    args += (["--detect", detect] if detect else []) + (["--alert-for", str(alert_for)] if alert_for is not None else [])
    inst = installation(data_dir, database_url, playbooks_dir=playbooks_dir, **fleet_opts)
    out, failed = drill.run(inst, scenario, host, args, live=live, echo=not state().json)
    if not state().json:
        out.pop("output")
    emit({**out, "ok": failed is None, "exit_code": failed.exit_code if failed else 0}, render(out))
    if failed is not None:
        raise failed
