"""erpctl settings: every operator setting of the installation, its value and where it came from."""

from __future__ import annotations

import click

from .. import config
from ..drill_jobs import JOB_PREFIX as DRILL_JOB_PREFIX, drill_schedules
from ..errors import SettingInvalid
from ..installation import SCHEDULE_ENV_PREFIX, SETTINGS, Installation
from .options import emit, json_option

SECRET = ("backup_passphrase", "s3_secret_access_key", "field_key_escrow_passphrase", "metrics_token")


def _row(inst: Installation, name: str) -> dict:
    try:
        got = inst.resolve(name)
    except SettingInvalid as exc:
        return {"value": None, "source": None, "error": exc.detail, "fix": exc.fix}
    value = "(set)" if name in SECRET and got.value else got.value
    if isinstance(value, tuple):  # a list setting (the drills' blackout windows)
        value = ", ".join(map(str, value)) or "none"
    if name == "database_url" and value is None:
        value = inst.display_url  # the SQLite database of the data directory
    return {"value": None if value is None else str(value) if not isinstance(value, (int, float)) else value,
            "source": got.source}


def _schedules(inst: Installation) -> dict:
    """The scheduled jobs as the running erpctl up planned them (runtime.json); when none runs, the
    schedules set for one (erpctl.toml [schedule], this environment's ERPCTL_SCHEDULE_*; erpctl up checks
    them when it starts)."""
    rt = inst.runtime()
    if rt.jobs and rt.alive():
        return {"of": f"the running erpctl up (pid {rt.pid})", "jobs": rt.jobs}
    out = {"of": "no erpctl up runs; the schedules set here, every other job at its default "
                 "('erpctl up --json' lists them all)", "jobs": []}
    table = inst.toml.get("schedule") or {}
    explicit = [(str(job_id), *inst.schedule(str(job_id), "")) for job_id in table]
    explicit += [(f"<{name}>", value, f"environment {name}") for name, value in sorted(inst.environ.items())
                 if name.startswith(SCHEDULE_ENV_PREFIX) and value]
    out["jobs"] = [{"id": job_id, "schedule": spec, "source": source} for job_id, spec, source in explicit]
    out["jobs"] += [{"id": DRILL_JOB_PREFIX + name, "schedule": inst.schedule(DRILL_JOB_PREFIX + name, spec)[0],
                     "source": _drill_source(inst, name)} for name, spec in sorted(drill_schedules(inst).items())
                    if DRILL_JOB_PREFIX + name not in table]
    return out


def _drill_source(inst: Installation, scenario: str) -> str:
    source = inst.schedule(DRILL_JOB_PREFIX + scenario, "")[1]
    return f"erpctl.toml [drill.schedule] {scenario!r}" if source == "default" else source


def render(r: dict) -> str:
    lines = [f"settings of {r['data_dir']} (flag > environment > running erpctl up > erpctl.toml > default)"]
    for name, row in r["settings"].items():
        shown = f"INVALID: {row['error']}" if row.get("error") else f"{row['value']}  ({row['source']})"
        lines.append(f"{name:<30} {shown}")
    sched = r["schedules"]
    lines.append(f"schedules ({sched['of']}):")
    lines += [f"{j['id']:<30} {j['schedule']}  ({j['source']})" for j in sched["jobs"]]
    return "\n".join(lines)


@click.command()
@click.option("--data-dir", envvar="ERPCTL_DATA_DIR", metavar="DIR", type=click.Path(file_okay=False, path_type=str),
              help=f"Data directory of the installation. Default: ./{config.DEFAULT_DATA_DIR} [env ERPCTL_DATA_DIR]")
@json_option
def settings(data_dir):
    """Show every setting (backup repository and key, S3, ports, the ERP's URL, probe thresholds...) with
    its value and source, and every scheduled job's schedule (the running erpctl up's); secrets show as
    (set). Exit 2 when one is invalid (named with its fix)."""
    inst = Installation.open(data_dir)
    rows = {s.name: _row(inst, s.name) for s in SETTINGS}
    out = {"data_dir": str(inst.data_dir), "settings": rows, "schedules": _schedules(inst)}
    emit(out, render(out))
    bad = [(n, r) for n, r in rows.items() if r.get("error")]
    if bad:
        raise SettingInvalid(bad[0][1]["error"], fix=bad[0][1]["fix"])
