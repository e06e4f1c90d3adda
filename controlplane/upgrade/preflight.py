"""The upgrade's preflight: every reason not to start, each with what was found and the fix."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from sqlalchemy import text

from erp_core.ops import MIGRATIONS_DIR, applied_migrations
from erp_core.ops import __version__ as ERP_VERSION

from .. import http
from .. import release as releases
from ..backup import restore as restore_mod
from ..config import Target
from ..errors import ReleaseNotFound
from . import checks
from .lint import lint_migrations
from .run import Run, bundled_checksums, database_bytes, open_repo


def _check(name: str, ok: bool, detail: str, fix: str = "") -> dict:
    return {"check": name, "ok": bool(ok), "detail": detail, "fix": "" if ok else fix}


def preflight(ctx: Run, *, with_backup_repo: bool = True) -> list[dict]:
    """Every check, in order: {check, ok, detail, fix}."""
    st, target = ctx.state, ctx.target
    out = [_no_other_operation(target)]
    cur = releases.current(target)
    to = _installed(target, st.to_version)
    out.append(_releases(st.to_version, cur, to))
    out.append(_migration_checksums(ctx, cur, to))
    out.append(_migration_lint())
    if ctx.opts.erp_url:
        out.append(_erp_healthy(ctx.opts.erp_url))
    out.append(_invariants(ctx))
    if ctx.dialect == "postgresql":
        out.append(_long_transactions(ctx))
    out.append(_free_disk(ctx))
    if with_backup_repo:
        out.append(_backup_possible(ctx))
    return out


def _no_other_operation(target: Target) -> dict:
    rs = restore_mod.read_state(target)
    busy = rs is not None and rs.get("phase") not in restore_mod.FINAL
    return _check("no other operation", not busy,
                  "a restore is in progress" if busy else "no restore in progress (the upgrade lock is held)",
                  "Finish it first: 'erpctl backup restore' resumes or rolls it back.")


def _releases(to_version: str | None, cur, to) -> dict:
    problems = []
    if cur is None:
        problems.append("no current release is set")
    if to is None:
        problems.append(f"release {to_version} is not installed")
    if to_version != ERP_VERSION:
        problems.append(f"this erpctl carries the migrations of release {ERP_VERSION}, "
                        f"not {to_version}")
    return _check("releases", not problems,
                  "; ".join(problems) or f"{cur.version} serves; {to.version} installed and carried by this erpctl",
                  f"Install the releases ('erpctl release install WHEEL'), set the one that serves "
                  f"('erpctl release current VERSION'), and run the erpctl of release {to_version}.")


def _migration_checksums(ctx: Run, cur, to) -> dict:
    """Every applied migration must be byte-identical in both releases and here."""
    bundled = bundled_checksums()
    changed = []
    applied = _applied_revisions(ctx)
    for rel in (r for r in (cur, to) if r is not None):
        shipped = {m["revision"]: m.get("sha256") for m in rel.migrations}
        for rev in applied:
            if rev in shipped and shipped[rev] != bundled.get(rev):
                changed.append(f"{rev} differs between release {rel.version} and this erpctl")
    return _check("migration checksums", not changed,
                  "; ".join(changed) or f"{len(applied)} applied migration(s) unchanged in every release",
                  "A migration that already ran was edited; restore its original text in the release, "
                  "and put the change in a new migration.")


def _migration_lint() -> dict:
    findings = [f for f in lint_migrations(MIGRATIONS_DIR / "versions") if f.severity == "error"]
    return _check("migration lint", not findings,
                  "; ".join(f"{Path(f.path).name}:{f.line} {f.rule}: {f.message}" for f in findings[:5])
                  or "no errors", "Fix the migrations ('erpctl upgrade lint' lists the findings).")


def _erp_healthy(erp_url: str) -> dict:
    url = erp_url.rstrip("/")
    try:
        code, body = http.get(url + "/readyz", timeout=5)
        ok = code == 200
        detail = f"{url}/readyz answered {code}" + ("" if ok else f": {json.dumps(body)[:300]}")
    except (OSError, ValueError) as exc:
        ok, detail = False, f"{url}/readyz did not answer: {exc}"
    return _check("ERP healthy", ok, detail,
                  "Make the ERP ready first (see runbooks/), or pass --offline when it is stopped on purpose.")


def _invariants(ctx: Run) -> dict:
    found = checks.run_invariants(ctx.engine)
    return _check("invariants", not found,
                  f"{len(found)} violation(s): " + "; ".join(v.get("check", "") + ": " + str(v.get("detail", ""))[:120]
                                                     for v in found[:3]) if found else "clean",
                  "Repair the data first ('erpctl erp check' lists them); an upgrade never starts on broken books.")


def _long_transactions(ctx: Run) -> dict:
    with ctx.engine.connect() as c:
        rows = c.execute(text(
            "SELECT pid, coalesce(application_name, ''), extract(epoch FROM now() - xact_start)::int "
            "FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND xact_start IS NOT NULL AND state <> 'idle' AND now() - xact_start > make_interval(secs => :s)"),
            {"s": ctx.opts.long_transaction_seconds}).all()
    return _check("no long transactions", not rows,
                  "; ".join(f"pid {p} ({a or 'no name'}) open for {s} s" for p, a, s in rows)
                  or f"none older than {ctx.opts.long_transaction_seconds:g} s",
                  "End them (they would hold the expand step's table locks): "
                  "SELECT pg_terminate_backend(pid) after checking what they are.")


def _free_disk(ctx: Run) -> dict:
    need, free, what = _disk_need(ctx)
    return _check("free disk", free >= need,
                  f"{free / 2**20:.0f} MiB free in {ctx.target.data_dir}, {need / 2**20:.0f} MiB needed ({what})",
                  "Free space in the data directory's file system, or point the backup repository elsewhere.")


def _backup_possible(ctx: Run) -> dict:
    try:
        repo = open_repo(ctx)
        return _check("backup possible", True, f"repository {repo.url} opens")
    except Exception as exc:  # noqa: BLE001 - the typed error's message is the reason
        return _check("backup possible", False,
                      f"no fresh verified backup can be taken: {getattr(exc, 'detail', exc)}",
                      getattr(exc, "fix", "") or "Initialise the repository ('erpctl backup init') "
                      "and set ERPCTL_BACKUP_PASSPHRASE or --key-file.")


def _installed(target: Target, version: str | None):
    try:
        return releases.get(target, version) if version else None
    except ReleaseNotFound:
        return None


def _applied_revisions(ctx: Run) -> list[str]:
    return [m["revision"] for m in applied_migrations(ctx.engine)]


def _disk_need(ctx: Run) -> tuple[int, int, str]:
    size = database_bytes(ctx)
    free = shutil.disk_usage(ctx.target.data_dir).free
    if ctx.target.sqlite_path is not None:
        # the backup's new chunks, a verification copy, and growth of the file and its WAL while migrating
        return int(size * 2.5) + 64 * 2**20, free, "backup + verification copy + migration growth = 2.5 x the database"
    return int(size * 1.2) + 64 * 2**20, free, "backup of the database dump = 1.2 x the database"


