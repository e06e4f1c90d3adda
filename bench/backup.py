"""erpctl's backups side by side with restic, in one run, on the same ERP database.

    python bench/backup.py                  # about 600 MB (erpctl erp seed --scale 282)
    python bench/backup.py --size-mb 50     # a quick run
    python bench/backup.py --json           # the figures as one JSON object

Figures, for both tools on the same file:
    full backup       time of a first backup (erpctl: consistent snapshot, page chunks, zstd, AES-GCM,
                      per-table row counts and checksums; restic: `restic backup` of the same
                      database file, checkpointed, no writers), and the CPU time each used (a figure
                      that another load on the machine disturbs less than the wall time)
    --check-invariants  erpctl's full backup that also runs erp_core.invariants at capture (into
                      another new repository; by default L3 runs them on the restored copy)
    scattered update  bytes each repository grows by (on disk) with a second backup after 1 % of the
                      rows of the mutable document and master-data tables, picked at random, were
                      updated (sales/purchase order notes, supplier references, addresses, names)
    L1 verify         erpctl check_chunks of every backup vs `restic check --read-data`
    restore           erpctl materialize (rebuild the file, every chunk verified) vs `restic restore`
    L1-L3             erpctl's verify --level 3: chunks, PRAGMA integrity_check and foreign_key_check,
                      per-table counts and checksums against the manifest, erp_core.invariants
    fail-closed       erpctl's restore into the live database: materialize, L1-L3, atomic swap

The generated database is cached under <tmp>/erpctl-bench-cache/scale-<N>/ (seeding takes about 2-3 s
per MB); every run works on a copy in a fresh temporary directory, removed afterwards unless --keep.
restic is the Debian package (apt-get install restic); its repository uses format 2 (zstd).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MB_PER_SCALE = 2.13  # erpctl erp seed (ERP 1.1): about 2.13 MB of SQLite per unit of scale
PASSPHRASE = "bench passphrase"
MUTABLE = (("sales_orders", "notes"), ("purchase_orders", "notes"), ("invoices", "supplier_reference"),
           ("partners", "address"), ("products", "name"), ("reorder_rules", "reorder_quantity"))


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def erpctl(*args) -> subprocess.CompletedProcess:
    exe = shutil.which("erpctl") or str(Path(sys.executable).with_name("erpctl"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ERPCTL_", "ERP_FIELD_KEY"))}
    return subprocess.run([exe, "--json", *map(str, args)], capture_output=True, text=True, env=env, check=True)


# ---- the database ---------------------------------------------------------------------------------

def ensure_database(size_mb: float, cache: Path) -> tuple[Path, dict]:
    scale = max(1, min(1000, round(size_mb / MB_PER_SCALE)))
    d = cache / f"scale-{scale}"
    ready = d / "ready.json"
    if ready.exists():
        return d, json.loads(ready.read_text())
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    log(f"generating the ERP database: erpctl erp seed --scale {scale} (about {scale * MB_PER_SCALE:.0f} MB, "
        f"roughly {scale * 5 / 60:.0f} min; cached in {d})")
    t0 = time.perf_counter()
    erpctl("erp", "migrate", "--data-dir", d)
    out = json.loads(erpctl("erp", "seed", "--scale", scale, "--data-dir", d).stdout)
    conn = sqlite3.connect(d / "erp.sqlite3")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    info = {"scale": scale, "seed_seconds": round(time.perf_counter() - t0, 1),
            "bytes": (d / "erp.sqlite3").stat().st_size, "created": out.get("created")}
    ready.write_text(json.dumps(info))
    return d, info


def scatter_update(db: Path, fraction: float = 0.01, seed: int = 7) -> int:
    """Update `fraction` of the rows of the mutable tables, at random (the invariants still hold)."""
    rng = random.Random(seed)
    conn = sqlite3.connect(db, isolation_level=None)
    changed = 0
    conn.execute("BEGIN")
    for table, column in MUTABLE:
        ids = [r[0] for r in conn.execute(f'SELECT id FROM "{table}"')]
        for i in rng.sample(ids, max(1, int(len(ids) * fraction))):
            value = rng.randint(50, 500) if column == "reorder_quantity" else f"edited {rng.random():.6f}"
            conn.execute(f'UPDATE "{table}" SET "{column}" = ? WHERE id = ?', (value, i))
            changed += 1
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # restic reads the main file only
    conn.close()
    return changed


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def timed(fn, *a, **kw):
    t0 = time.perf_counter()
    out = fn(*a, **kw)
    return out, time.perf_counter() - t0


def cpu_timed(fn, *a, **kw):
    """(result, wall seconds, CPU seconds of this process and of the children it waited for)."""
    import resource

    def cpu():
        own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime

    c0 = cpu()
    out, wall = timed(fn, *a, **kw)
    return out, wall, cpu() - c0


# ---- restic ---------------------------------------------------------------------------------------

class Restic:
    def __init__(self, work: Path):
        self.repo = work / "restic-repo"
        self.env = {**os.environ, "RESTIC_PASSWORD": PASSPHRASE, "RESTIC_REPOSITORY": str(self.repo),
                    "RESTIC_CACHE_DIR": str(work / "restic-cache")}
        self.exe = shutil.which("restic")

    def run(self, *args) -> str:
        proc = subprocess.run([self.exe, *args], capture_output=True, text=True, env=self.env, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"restic {' '.join(args)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
        return proc.stdout

    def version(self) -> str:
        return self.run("version").strip()

    def init(self) -> None:
        self.run("init", "--repository-version", "2")

    def backup(self, path: Path) -> dict:
        out = self.run("backup", "--json", "--compression", "auto", str(path))
        summary = [json.loads(l) for l in out.splitlines() if '"message_type":"summary"' in l.replace(" ", "")]
        return summary[-1] if summary else {}

    def check(self) -> None:
        self.run("check", "--read-data")

    def restore(self, dest: Path) -> None:
        self.run("restore", "latest", "--target", str(dest))


# ---- the run --------------------------------------------------------------------------------------

def run(args) -> dict:
    from controlplane.backup import restore as R
    from controlplane.backup import verify as V
    from controlplane.backup.repository import open_repository
    from controlplane.config import Target

    restic = Restic(Path("."))
    if not restic.exe:
        sys.exit("restic is not installed: apt-get install -y --no-install-recommends restic")
    cache = Path(args.cache)
    source, info = ensure_database(args.size_mb, cache)
    work = Path(tempfile.mkdtemp(prefix="erpctl-bench-", dir=args.work))
    try:
        data = work / "data"
        data.mkdir()
        shutil.copy(source / "erp.sqlite3", data / "erp.sqlite3")
        shutil.copy(source / "field.key", data / "field.key")
        (data / "field.key").chmod(0o600)
        db = data / "erp.sqlite3"
        target = Target(data, f"sqlite:///{db}")
        size = db.stat().st_size
        log(f"database {size / 1e6:.0f} MB (scale {info['scale']}), work in {work}")
        restic = Restic(work)
        fig: dict = {"database_bytes": size, "scale": info["scale"], "restic_version": restic.version(),
                     "cpus": os.cpu_count(), "load_average_start": os.getloadavg()}

        # full backups
        repo_dir = work / "erpctl-repo"
        repo = open_repository(f"file://{repo_dir}", passphrase=PASSPHRASE, create=True, data_dir=data)
        log("erpctl: full backup")
        m1, t, cpu = cpu_timed(repo.create_backup, target)
        fig["erpctl_full_backup_seconds"], fig["erpctl_full_backup_cpu_seconds"] = t, cpu
        fig["erpctl_full_backup_details"] = m1.details
        fig["erpctl_repo_bytes_after_full"] = du(repo_dir)
        log(f"  {t:.2f} s ({cpu:.2f} s CPU), repository {fig['erpctl_repo_bytes_after_full'] / 1e6:.1f} MB")
        restic.init()
        log("restic: full backup")
        s1, t, cpu = cpu_timed(restic.backup, db)
        fig["restic_full_backup_seconds"], fig["restic_full_backup_cpu_seconds"] = t, cpu
        fig["restic_repo_bytes_after_full"] = du(restic.repo)
        log(f"  {t:.2f} s ({cpu:.2f} s CPU), repository {fig['restic_repo_bytes_after_full'] / 1e6:.1f} MB")
        if not args.skip_invariants:
            log("erpctl: full backup with --check-invariants (another new repository)")
            other = open_repository(f"file://{work / 'erpctl-repo-invariants'}", passphrase=PASSPHRASE, create=True,
                                    data_dir=data)
            mi, t = timed(other.create_backup, target, check_invariants=True)
            assert mi.invariants == [], mi.invariants
            fig["erpctl_full_backup_check_invariants_seconds"] = t
            shutil.rmtree(work / "erpctl-repo-invariants", ignore_errors=True)

        # the scattered update, then a second backup
        fig["rows_updated"] = scatter_update(db)
        log(f"updated {fig['rows_updated']} rows (1 % of the mutable tables)")
        log("erpctl: second backup")
        m2, t = timed(repo.create_backup, target)
        fig["erpctl_second_backup_seconds"] = t
        fig["erpctl_second_bytes_added"] = du(repo_dir) - fig["erpctl_repo_bytes_after_full"]
        fig["erpctl_second_bytes_added_reported"] = m2.bytes_added
        log("restic: second backup")
        s2, t = timed(restic.backup, db)
        fig["restic_second_backup_seconds"] = t
        fig["restic_second_bytes_added"] = du(restic.repo) - fig["restic_repo_bytes_after_full"]
        fig["restic_second_data_added_reported"] = s2.get("data_added")

        # L1 against restic check --read-data (every backup, every byte)
        log("erpctl: L1 (check_chunks of every backup)")
        res, t = timed(repo.check_chunks)
        assert res.ok, res.problems[:3]
        fig["erpctl_l1_seconds"] = t
        fig["erpctl_l1_bytes_read"] = res.bytes_read
        log("restic: check --read-data")
        _, t = timed(restic.check)
        fig["restic_check_read_data_seconds"] = t

        # restore: rebuild the file
        log("erpctl: materialize (restore the file)")
        out_e = work / "restore-erpctl"
        art, t = timed(repo.materialize, m2.id, out_e)
        fig["erpctl_restore_seconds"] = t
        log("restic: restore")
        out_r = work / "restore-restic"
        _, t = timed(restic.restore, out_r)
        fig["restic_restore_seconds"] = t
        shutil.rmtree(out_e, ignore_errors=True)
        shutil.rmtree(out_r, ignore_errors=True)

        # the full ladder L1-L3, and the fail-closed restore
        log("erpctl: verify --level 3")
        v, t = timed(V.verify_backup, repo, m2.id, 3, target=target)
        assert v.ok, v.as_dict()
        fig["erpctl_l1_l3_seconds"] = t
        fig["erpctl_l1_l3_levels"] = {f"L{l.level}": round(l.duration_seconds, 2) for l in v.levels}
        fig["erpctl_l1_l3_facts"] = {f"L{l.level}": l.facts for l in v.levels}
        if not args.skip_restore:
            log("erpctl: fail-closed restore into the live database (L1-L3, swap)")
            r, t = timed(R.restore, target, repo, m1.id)
            fig["erpctl_fail_closed_restore_seconds"] = t
        fig["load_average_end"] = os.getloadavg()
        return fig
    finally:
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def ratio(a, b) -> str:
    return f"{a / b:.2f}" if a is not None and b else "-"


def table(f: dict) -> str:
    mb = 1e6
    rows = [
        ("full backup (s)", f["erpctl_full_backup_seconds"], f["restic_full_backup_seconds"], "{:.2f}"),
        ("  CPU time of it (s)", f["erpctl_full_backup_cpu_seconds"], f["restic_full_backup_cpu_seconds"], "{:.2f}"),
        ("  erpctl with --check-invariants (s)", f.get("erpctl_full_backup_check_invariants_seconds"), None,
         "{:.2f}"),
        ("2nd backup after 1 % scattered update (s)", f["erpctl_second_backup_seconds"],
         f["restic_second_backup_seconds"], "{:.2f}"),
        ("  bytes added by it (MB, on disk)", f["erpctl_second_bytes_added"] / mb, f["restic_second_bytes_added"] / mb,
         "{:.2f}"),
        ("repository after the full backup (MB)", f["erpctl_repo_bytes_after_full"] / mb,
         f["restic_repo_bytes_after_full"] / mb, "{:.1f}"),
        ("L1 verify vs restic check --read-data (s)", f["erpctl_l1_seconds"], f["restic_check_read_data_seconds"],
         "{:.2f}"),
        ("restore the file (s)", f["erpctl_restore_seconds"], f["restic_restore_seconds"], "{:.2f}"),
        ("full L1-L3 verification (s)", f["erpctl_l1_l3_seconds"], None, "{:.2f}"),
        ("fail-closed restore: L1-L3 + swap (s)", f.get("erpctl_fail_closed_restore_seconds"), None, "{:.2f}"),
    ]
    load = " -> ".join("/".join(f"{x:.2f}" for x in f[k]) for k in ("load_average_start", "load_average_end"))
    out = [f"database {f['database_bytes'] / mb:.0f} MB (erpctl erp seed --scale {f['scale']}), "
           f"{f['rows_updated']} rows updated, {f['cpus']} CPUs, load average {load}, {f['restic_version']}",
           f"{'':<44}{'erpctl':>10}{'restic':>10}{'erpctl/restic':>15}"]
    for name, a, b, fmt in rows:
        out.append(f"{name:<44}{fmt.format(a) if a is not None else '-':>10}"
                   f"{fmt.format(b) if b is not None else '-':>10}{ratio(a, b):>15}")
    out.append("L1-L3 by level (s): " + ", ".join(f"{k} {v}" for k, v in f["erpctl_l1_l3_levels"].items()))
    d = f.get("erpctl_full_backup_details") or {}
    if "store_seconds" in d:
        out.append(f"erpctl full backup: capture ({d.get('capture', 'copy')}) {d.get('capture_seconds')} s, chunking and sealing "
                   f"{d['store_seconds']} s ({d.get('seal_cpu_seconds')} s CPU sealing)")
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size-mb", type=float, default=600, help="database size to generate (default 600)")
    p.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "erpctl-bench-cache"),
                   help="where generated databases are kept between runs")
    p.add_argument("--work", default=None, help="parent of the temporary work directory (default: the temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    p.add_argument("--skip-restore", action="store_true", help="skip the fail-closed restore")
    p.add_argument("--skip-invariants", action="store_true", help="skip the full backup with --check-invariants")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = p.parse_args()
    import logging

    logging.basicConfig(level=logging.WARNING)
    fig = run(args)
    print(json.dumps(fig, indent=1, default=str) if args.json else table(fig))


if __name__ == "__main__":
    main()
