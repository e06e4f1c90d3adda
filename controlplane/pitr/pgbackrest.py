"""pgBackRest, driven by erpctl: the configuration it writes, the checks of setup, backups, what the
repository holds, and recovery targets checked against it before anything is restored."""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from pathlib import Path

import psycopg

from ..errors import PitrError, PitrNotConfigured, PitrRepoUnreachable, PitrTargetInvalid
from ..evidence import EvidenceLog
from . import cluster
from .config import PitrConfig

ARCHIVE_FIX = ("On the cluster: ALTER SYSTEM SET wal_level = 'replica'; ALTER SYSTEM SET archive_mode = 'on'; "
               "ALTER SYSTEM SET archive_command = '{cmd}'; then restart PostgreSQL (archive_mode and wal_level "
               "need a restart). 'erpctl pitr setup --configure' sets them for you.")
REPO_WORDS = ("unable to open", "unable to create", "permission denied", "no such file or directory",
              "repo1-path", "unable to list")


def conf_text(cfg: PitrConfig) -> str:
    return "\n".join([
        "# written by erpctl pitr setup; changed by running it again",
        "[global]", f"repo1-path={cfg.repo}", f"log-path={Path(cfg.home) / 'log'}",
        f"lock-path={Path(cfg.home) / 'lock'}", "log-level-console=warn", "log-level-file=info", "start-fast=y",
        "repo1-retention-full=4", "compress-type=lz4", "process-max=2", "archive-async=n", "",
        f"[{cfg.stanza}]", f"pg1-path={cfg.pg_data}", f"pg1-port={cfg.pg_port}", f"pg1-socket-path={cfg.pg_socket}",
        f"pg1-user={cfg.pg_user}", ""])


def write_conf(cfg: PitrConfig) -> None:
    home = Path(cfg.home)
    for sub in ("", "repo", "log", "lock", "restores"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    tmp = cfg.conf.with_suffix(".tmp")
    tmp.write_text(conf_text(cfg))
    os.replace(tmp, cfg.conf)
    os.chmod(home, 0o750)
    cluster.chown_tree(home, cfg.os_user)


def run(cfg: PitrConfig, *args: str, timeout: float = 7200) -> str:
    """pgBackRest `args` for the stanza, as the cluster's owner; its stdout. A repository it cannot
    use is PitrRepoUnreachable, any other failure a PitrError with what pgBackRest said."""
    try:
        done = cluster.run(["pgbackrest", f"--config={cfg.conf}", f"--stanza={cfg.stanza}", *args], cfg.os_user,
                           timeout=timeout)
    except PitrError as exc:
        if any(w in exc.detail.lower() for w in REPO_WORDS) and "repo" in exc.detail.lower():
            raise PitrRepoUnreachable(f"pgBackRest cannot use its repository {cfg.repo}: {exc.detail}",
                                      fix=f"Make {cfg.repo} exist and be writable by {cfg.os_user} (mounted, not "
                                          "full), then run the command again.") from None
        raise
    return done.stdout


def archiving_problems(cfg: PitrConfig) -> list[str]:
    """What keeps the cluster from archiving its WAL into this stanza (empty: nothing)."""
    rows = dict(cluster.query(cfg.conninfo("postgres"), "SELECT name, setting FROM pg_settings WHERE name IN "
                              "('archive_mode', 'archive_command', 'wal_level')"))
    problems = []
    if rows.get("wal_level") not in ("replica", "logical"):
        problems.append(f"wal_level is {rows.get('wal_level')!r}, not 'replica'")
    if rows.get("archive_mode") not in ("on", "always"):
        problems.append(f"archive_mode is {rows.get('archive_mode')!r}, not 'on'")
    command = rows.get("archive_command") or ""
    if "pgbackrest" not in command or f"--stanza={cfg.stanza}" not in command or str(cfg.conf) not in command:
        problems.append(f"archive_command is {command!r}, not pgBackRest's for stanza {cfg.stanza!r}")
    return problems


def configure_archiving(cfg: PitrConfig) -> list[str]:
    """Set wal_level, archive_mode and archive_command with ALTER SYSTEM and reload; what still needs
    a restart of the cluster."""
    info = cfg.conninfo("postgres")
    for name, value in (("wal_level", "replica"), ("archive_mode", "on"), ("archive_command", cfg.archive_command())):
        current = cluster.query(info, "SELECT setting FROM pg_settings WHERE name = %s", (name,))[0][0]
        good = ("replica", "logical") if name == "wal_level" else ("on", "always")
        if name != "archive_command" and current in good:
            continue
        with cluster.connect(info) as conn:
            conn.execute(f"ALTER SYSTEM SET {name} = " + psycopg.sql.quote(value))
    cluster.query(info, "SELECT pg_reload_conf()")
    time.sleep(0.5)
    return [p for p in archiving_problems(cfg) if not p.startswith("archive_command")]


def setup(cfg: PitrConfig, configure: bool) -> dict:
    """Write the configuration, check archiving (set it with `configure`), create the stanza, run
    `pgbackrest check` (which archives a WAL segment and waits for it in the repository)."""
    write_conf(cfg)
    problems = archiving_problems(cfg)
    if problems and configure:
        problems = configure_archiving(cfg)
        if problems:
            raise PitrNotConfigured("archiving is set but needs a restart of PostgreSQL: " + "; ".join(problems),
                                    fix=f"Restart the cluster (pg_ctl -D {cfg.pg_data} restart, or systemctl "
                                        "restart postgresql), then run 'erpctl pitr setup' again.")
    elif problems:
        raise PitrNotConfigured("PostgreSQL does not archive its WAL to pgBackRest: " + "; ".join(problems),
                                fix=ARCHIVE_FIX.format(cmd=cfg.archive_command()))
    t0 = time.perf_counter()
    run(cfg, "stanza-create", timeout=300)
    run(cfg, "check", timeout=300)
    return {"stanza": cfg.stanza, "repo": str(cfg.repo), "conf": str(cfg.conf),
            "archive_command": cfg.archive_command(),
            "check": "pgbackrest check: WAL archived and found in the repository",
            "seconds": round(time.perf_counter() - t0, 3)}


def info(cfg: PitrConfig) -> dict:
    """pgBackRest's info for the stanza (backups, archive range, status)."""
    data = json.loads(run(cfg, "info", "--output=json", timeout=300) or "[]")
    stanza = next((s for s in data if s.get("name") == cfg.stanza), None)
    if stanza is None:
        raise PitrNotConfigured(f"pgBackRest's repository has no stanza {cfg.stanza!r}",
                                fix="Run 'erpctl pitr setup' (it creates the stanza).")
    return stanza


def _when(epoch) -> str | None:
    return dt.datetime.fromtimestamp(int(epoch), dt.UTC).isoformat() if epoch else None


def backups(stanza: dict) -> list[dict]:
    out = []
    for b in stanza.get("backup") or []:
        ts = b.get("timestamp") or {}
        out.append({"label": b.get("label"), "type": b.get("type"), "started": _when(ts.get("start")),
                    "stopped": _when(ts.get("stop")), "stopped_epoch": ts.get("stop"),
                    "size_bytes": (b.get("info") or {}).get("size"),
                    "repo_bytes": ((b.get("info") or {}).get("repository") or {}).get("delta"),
                    "wal_start": (b.get("archive") or {}).get("start"),
                    "wal_stop": (b.get("archive") or {}).get("stop"),
                    "error": bool(b.get("error"))})
    return out


def backup(cfg: PitrConfig, data_dir, kind: str = "full") -> dict:
    """Take a backup (full, diff or incr) and record it in the evidence log."""
    t0 = time.perf_counter()
    run(cfg, f"--type={kind}", "backup")
    seconds = time.perf_counter() - t0
    made = backups(info(cfg))[-1]
    result = {**made, "seconds": round(seconds, 3), "stanza": cfg.stanza}
    EvidenceLog(data_dir).append("pitr.backup", {k: v for k, v in result.items() if k != "stopped_epoch"})
    return result


def parse_time(text: str) -> dt.datetime:
    """An ISO 8601 time with its zone ('2026-12-05T09:06:45+00:00', '...Z')."""
    try:
        when = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace(" ", "T", 1))
    except ValueError:
        raise PitrTargetInvalid(f"--to {text!r} is not a time", fix="Give an ISO 8601 time with its zone, e.g. "
                                "2026-12-05T09:30:00+00:00.") from None
    if when.tzinfo is None:
        raise PitrTargetInvalid(f"--to {text!r} has no time zone",
                                fix="Add the zone (+00:00 or Z for UTC): a time without one is ambiguous.")
    return when


def check_time_target(stanza: dict, when: dt.datetime) -> dict:
    """The backup a restore to `when` starts from (the newest one that ended before it), or
    PitrTargetInvalid: before the first backup, or in the future."""
    done = [b for b in backups(stanza) if not b["error"]]
    if not done:
        raise PitrTargetInvalid("the repository holds no backup yet", fix="Take one: 'erpctl pitr backup'.")
    first = done[0]
    if when.timestamp() < first["stopped_epoch"]:
        raise PitrTargetInvalid(f"--to {when.isoformat()} is before the first backup, which ended at "
                                f"{first['stopped']}: no backup can be rolled forward to it",
                                fix=f"Choose a time after {first['stopped']} ('erpctl pitr status' shows the "
                                    "recoverable window).")
    if when > dt.datetime.now(dt.UTC):
        raise PitrTargetInvalid(f"--to {when.isoformat()} is in the future",
                                fix="Choose a past time, or restore to the end of the archive (no --to).")
    return max((b for b in done if b["stopped_epoch"] <= when.timestamp()), key=lambda b: b["stopped_epoch"])


def parse_xid(text) -> int:
    try:
        xid = int(str(text).strip())
    except ValueError:
        xid = 0
    if xid < 3:  # 0-2 are PostgreSQL's reserved transaction ids
        raise PitrTargetInvalid(f"--before-xid {text!r} is not a transaction id",
                                fix="Give the id of the transaction to stop before (a number, e.g. from "
                                    "pg_current_xact_id() or the ERP's audit log).")
    return xid
