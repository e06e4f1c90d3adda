"""Restore the cluster to a point in time into a scratch directory, start it on a scratch port and
prove it with the verification ladder before anyone may put it in the live one's place.

    to a time                pgBackRest --type=time --target=T (the newest backup that ended before T,
                             rolled forward through the archived WAL up to T), then promoted
    just before transaction  --type=xid --target=X --target-exclusive
    to the end of the archive no target ('erpctl pitr verify': the repository restores, in full)

The restored cluster never archives (--archive-mode=off) and never waits for a synchronous standby.
The ladder, as controlplane/backup/verify.py defines it, applied to a cluster:

    L1 repository  `pgbackrest verify`: every backup file and archived WAL segment checksum-checked
    L2 engine      erpctl's engine integrity check (controlplane/integrity.py: every table read, data
                   checksum failures, amcheck) on the restored database
    L3 content     schema revision read and erp_core.invariants clean (verify.invariant_problems)
    L4 service     an ERP served on the restored database answers /readyz and serves a sample of
                   documents and the trial balance as stored (verify.serve_and_sample)

A restore that fails the ladder is stopped and removed (exit 115); one that passes is removed too
unless --keep, which leaves it running on its port for the operator to swap in (docs/pitr.md).
Each run is one evidence record (kind 'pitr.restore' or 'pitr.verify') with its target, the backup it
started from, its timings and every level.
"""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
import time
from pathlib import Path

from erp_core import ops

from .. import integrity, results
from ..backup import verify
from ..backup.verify import LevelResult, Verification
from ..config import Target
from ..errors import IntegrityFailed, PitrError, PitrTargetInvalid, PitrVerificationFailed
from ..evidence import EvidenceLog
from . import cluster, pgbackrest
from .config import PitrConfig

RECOVERY_TIMEOUT = 3600.0
NEVER_REACHED = "recovery ended before configured recovery target was reached"


def _base(stanza: dict, label: str | None) -> dict | None:
    """The backup named --set (None: pgBackRest's choice), or PitrTargetInvalid naming the ones there are."""
    done = [b for b in pgbackrest.backups(stanza) if not b["error"]]
    if not done:
        raise PitrTargetInvalid("the repository holds no backup yet", fix="Take one: 'erpctl pitr backup'.")
    if label is None:
        return None
    found = next((b for b in done if b["label"] == label), None)
    if found is None:
        raise PitrTargetInvalid(f"--set {label!r} is not a backup of the repository",
                                fix=f"Choose one of {', '.join(b['label'] for b in done)} ('erpctl pitr status').")
    return found


def _target_args(stanza: dict, to: str | None, before_xid, label: str | None = None) -> tuple[list[str], dict]:
    if to is not None and before_xid is not None:
        raise PitrTargetInvalid("--to and --before-xid name two targets", fix="Give one of them.")
    chosen = _base(stanza, label)
    if to is not None:
        when = pgbackrest.parse_time(to)
        base = pgbackrest.check_time_target(stanza, when)
        if chosen is not None and chosen["stopped_epoch"] > when.timestamp():
            raise PitrTargetInvalid(f"backup {label} ended at {chosen['stopped']}, after --to {when.isoformat()}",
                                    fix="Choose an older backup with --set, or leave --set out.")
        base = chosen or base
        return ([f"--set={base['label']}", "--type=time", f"--target={when.isoformat()}", "--target-action=promote"],
                {"type": "time", "to": when.isoformat(), "backup": base["label"]})
    base = chosen or [b for b in pgbackrest.backups(stanza) if not b["error"]][-1]
    args = [f"--set={base['label']}"]
    if before_xid is not None:
        xid = pgbackrest.parse_xid(before_xid)
        return (args + ["--type=xid", f"--target={xid}", "--target-exclusive", "--target-action=promote"],
                {"type": "xid", "before_xid": xid, "backup": base["label"]})
    return args, {"type": "end-of-archive", "backup": base["label"]}


class Restored:
    """A cluster restored into a scratch directory, running on a scratch port until dropped."""

    def __init__(self, cfg: PitrConfig, run_id: str):
        self.cfg = cfg
        self.dir = cfg.restores / run_id
        self.log = cfg.restores / f"{run_id}.log"
        self.socket = tempfile.mkdtemp(prefix="erpctl-pg-")  # short: a Unix socket's path has a size limit
        self.port: int | None = None

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://{self.cfg.pg_user}@127.0.0.1:{self.port}/{self.cfg.database}"

    def conninfo(self) -> dict:
        return {"host": "127.0.0.1", "port": self.port, "user": self.cfg.pg_user, "dbname": self.cfg.database}

    def restore(self, args: list[str]) -> None:
        self.dir.mkdir(mode=0o700, parents=True)
        cluster.chown_tree(self.dir, self.cfg.os_user)
        cluster.chown_tree(self.socket, self.cfg.os_user)
        pgbackrest.run(self.cfg, f"--pg1-path={self.dir}", "--archive-mode=off", *args, "restore")

    def start(self, port: int | None) -> float:
        self.port = port or cluster.free_port()
        t0 = time.monotonic()
        try:
            cluster.start(self.cfg.pg_bin, self.dir, self.cfg.os_user, port=self.port, socket_dir=self.socket,
                          log=self.log, timeout=RECOVERY_TIMEOUT,
                          settings={"synchronous_standby_names": "", "archive_mode": "off"})
            cluster.wait_out_of_recovery(self.conninfo(), RECOVERY_TIMEOUT, alive=self._alive)
        except PitrError:
            if NEVER_REACHED in cluster.log_tail(self.log, 40):
                raise PitrTargetInvalid("the archived WAL ends before the target: recovery never reached it (a "
                                        "transaction id not yet used, or one older than the backup restored)",
                                        fix="Check the id; for a transaction older than the newest backup, pass "
                                            "--set with an older backup ('erpctl pitr status' lists them).") from None
            raise
        return time.monotonic() - t0

    def _alive(self) -> bool:
        return (self.dir / "postmaster.pid").exists()

    def drop(self) -> None:
        cluster.stop(self.cfg.pg_bin, self.dir, self.cfg.os_user, mode="immediate", timeout=60)
        shutil.rmtree(self.dir, ignore_errors=True)
        shutil.rmtree(self.socket, ignore_errors=True)
        self.log.unlink(missing_ok=True)


# ---- the ladder on a restored cluster -------------------------------------------------------------

def _level(n: int, fn) -> LevelResult:
    t0 = time.perf_counter()
    try:
        result = fn()
    except PitrError as exc:
        result = LevelResult(n, verify.LEVELS[n], False, 0.0, f"L{n} failed: {exc.detail}",
                             [{"what": "error", "detail": exc.detail}])
    result.duration_seconds = time.perf_counter() - t0
    return result


def _l1(cfg: PitrConfig) -> LevelResult:
    said = pgbackrest.run(cfg, "verify", "--output=text")
    return LevelResult(1, "repository", True, 0.0, "pgbackrest verify: backup files and archived WAL checksums "
                       "match", facts={"pgbackrest_verify": said.strip()[-500:]})


def _l2(url: str) -> LevelResult:
    try:
        found = integrity.check(Target(Path("."), url))
    except IntegrityFailed as exc:
        problems = [{"what": "engine", "check": "integrity", "detail": p} for p in exc.extra.get("problems", [])]
        return LevelResult(2, "engine", False, 0.0, exc.detail, problems or [{"what": "engine", "detail": exc.detail}])
    return LevelResult(2, "engine", True, 0.0, f"{found['checked']['tables']} tables read in full, no data checksum "
                       f"failure, {found['checked']['indexes']} B-tree indexes checked by amcheck",
                       facts=found["checked"])


def _l3(url: str) -> LevelResult:
    db = ops.Database(url, pool_size=2, max_overflow=2)
    facts: dict = {}
    try:
        facts["schema_revision"] = ops.current_revision(db.engine)
        problems = verify.invariant_problems(db, facts)
    finally:
        db.dispose()
    if problems:
        return LevelResult(3, "content", False, 0.0, f"{len(problems)} invariant violation(s); first: "
                           f"{problems[0]['detail']}", problems, facts)
    return LevelResult(3, "content", True, 0.0, f"schema revision {facts['schema_revision']}; invariants clean "
                       f"({facts.get('invariant_checks')} checks)", facts=facts)


def ladder(cfg: PitrConfig, url: str, level: int, field_key: str | None) -> list[LevelResult]:
    steps = {1: lambda: _l1(cfg), 2: lambda: _l2(url), 3: lambda: _l3(url),
             4: lambda: verify.serve_and_sample(url, field_key)}
    out: list[LevelResult] = []
    for n in range(1, max(1, min(verify.MAX_LEVEL, level)) + 1):
        out.append(_level(n, steps[n]))
        if not out[-1].ok:
            break
    return out


# ---- the command ------------------------------------------------------------------------------------

def restore(data_dir, cfg: PitrConfig, *, to: str | None = None, before_xid=None, level: int = 4,
            keep: bool = False, port: int | None = None, field_key: str | None = None,
            backup_set: str | None = None) -> dict:
    """Restore (to `to`, before `before_xid`, or to the end of the archive), verify, keep or drop."""
    stanza = pgbackrest.info(cfg)
    args, target = _target_args(stanza, to, before_xid, backup_set)
    kind = "pitr.verify" if target["type"] == "end-of-archive" else "pitr.restore"
    run_id = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S") + f"-{time.monotonic_ns() % 10**6:06d}"
    restored = Restored(cfg, run_id)
    t0 = time.perf_counter()
    try:
        restored.restore(args)
        restore_seconds = time.perf_counter() - t0
        recovery_seconds = restored.start(port)
        levels = ladder(cfg, restored.url, level, field_key)
    except BaseException:
        restored.drop()
        raise
    v = Verification(f"{cfg.stanza}:{target['backup']}", max(1, min(verify.MAX_LEVEL, level)), "postgresql", levels,
                     time.perf_counter() - t0)
    out = {**target, "ok": v.ok, "stanza": cfg.stanza, "restore_seconds": round(restore_seconds, 3),
           "recovery_seconds": round(recovery_seconds, 3), "total_seconds": round(v.duration_seconds, 3),
           "kept": bool(keep and v.ok), "verification": v.as_dict()}
    if out["kept"]:
        out.update(pg_data=str(restored.dir), port=restored.port,
                   database_url=restored.url.replace("+psycopg", ""), log=str(restored.log),
                   socket_dir=restored.socket)
    else:
        restored.drop()
    EvidenceLog(data_dir).append(kind, {k: v_ for k, v_ in out.items() if k != "verification"}
                                 | {"levels": [l.as_dict() for l in levels]}, outcome="ok" if v.ok else "failed")
    results.record(data_dir, kind, v.ok, duration=out["total_seconds"], summary=_summary(out, v))
    if not v.ok:
        raise PitrVerificationFailed(f"the restored cluster failed L{v.failed.level} {v.failed.name}: "
                                     f"{v.failed.summary}; it was removed, the live cluster is untouched",
                                     fix="Try an earlier target, or another backup; the evidence record "
                                         "names every problem.", result=out)
    return out


def _summary(out: dict, v: Verification) -> str:
    what = out.get("to") or (f"before xid {out['before_xid']}" if "before_xid" in out else "end of archive")
    return f"restored to {what} from {out['backup']}: passed L{v.passed_level}/{v.requested_level}"
