"""PostgreSQL point-in-time recovery and failover, timed as an operator runs them (whole erpctl processes).

    python bench/pitr.py                       # ERP database filled by pgbench -i -s 70 (~1.05 GB), 3 rounds
    python bench/pitr.py --scale 5 --rounds 1  # a quick look
    python bench/pitr.py --json

PITR: a cluster of its own (initdb, a free port; the machine's PostgreSQL is not touched) with the
ERP's database migrated and then filled by `pgbench -i -s SCALE` in the same database; `erpctl pitr
setup`, `erpctl pitr backup` (full), then `pgbench -t N` of writes after the backup, a first write,
the time noted, a second write, the WAL switched. Each round: `erpctl pitr restore --to <noted time>`
(levels 1-4 of the ladder on the restored cluster, which is then removed): its wall time, pgBackRest's
restore, the WAL replay up to the target, each level; and whether the first write is there and the
second is not (--keep on the last round only to look).

Failover: each round a fresh primary with a synchronous standby (pg_basebackup -R), a stream of
acknowledged writes, the primary killed (pg_ctl stop -m immediate), then `erpctl fleet failover`:
its wall time, promote (pg_promote until out of recovery) and first write on the new primary, both
from the start of the promotion; and how many acknowledged writes the promoted standby lacks.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg
import yaml

from controlplane.pitr import cluster as pg
from tests.controlplane.pitr.clusters import BIN, Cluster, erp_database, run_erpctl, scratch_dir


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def timed(*args, **kw):
    t0 = time.perf_counter()
    rc, out, err = run_erpctl(*args, **kw)
    if rc != 0:
        raise SystemExit(f"erpctl {' '.join(args)} exited {rc}: {err}")
    return time.perf_counter() - t0, out


def fill(c: Cluster, scale: int, writes: int) -> dict:
    t0 = time.perf_counter()
    pg.run([str(BIN / "pgbench"), "-i", "-s", str(scale), "-q", "-h", "127.0.0.1", "-p", str(c.port), "-U",
            "postgres", "erp"], c.user, timeout=7200)
    return {"pgbench_init_seconds": round(time.perf_counter() - t0, 1),
            "database_bytes": c.sql("SELECT pg_database_size('erp')")[0][0], "writes_after_backup": writes}


def pitr_bench(base: Path, scale: int, rounds: int, writes: int) -> dict:
    c = Cluster(base, "live").initdb(archive_mode="on", max_wal_size="4GB").start()
    try:
        url = erp_database(c)
        facts = fill(c, scale, writes)
        data_dir = base / "ops"
        t, _ = timed("pitr", "setup", "--pgbackrest-dir", str(base / "pgbackrest"), "--configure",
                     data_dir=data_dir, database_url=url)
        facts["setup_seconds"] = round(t, 2)
        t, made = timed("pitr", "backup", data_dir=data_dir, database_url=url)
        facts.update(backup_seconds=round(t, 2), backup_repo_bytes=made["repo_bytes"])
        pg.run([str(BIN / "pgbench"), "-t", str(writes), "-c", "2", "-n", "-h", "127.0.0.1", "-p", str(c.port),
                "-U", "postgres", "erp"], c.user, timeout=7200)
        c.sql("CREATE TABLE bench_marks (what text)")
        c.sql("INSERT INTO bench_marks VALUES ('first')")
        noted = c.sql("SELECT clock_timestamp()")[0][0].isoformat()
        time.sleep(0.2)
        c.sql("INSERT INTO bench_marks VALUES ('second')")
        segment = c.sql("SELECT pg_walfile_name(pg_switch_wal())")[0][0]
        while (c.sql("SELECT last_archived_wal FROM pg_stat_archiver")[0][0] or "") < segment:
            time.sleep(0.2)
        runs = []
        for i in range(rounds):
            keep = ["--keep"] if i == rounds - 1 else []
            t, out = timed("pitr", "restore", "--to", noted, *keep, data_dir=data_dir, database_url=url)
            run = {"wall_seconds": round(t, 2), "restore_seconds": out["restore_seconds"],
                   "recovery_seconds": out["recovery_seconds"],
                   "levels": {f"L{l['level']}": l["duration_seconds"] for l in out["verification"]["levels"]},
                   "ok": out["ok"], "load": load()}
            if keep:
                restored = {"host": "127.0.0.1", "port": out["port"], "user": "postgres", "dbname": "erp"}
                run["marks"] = [r[0] for r in pg.query(restored, "SELECT what FROM bench_marks")]
                pg.stop(str(BIN), out["pg_data"], c.user, mode="immediate")
                shutil.rmtree(out["pg_data"], ignore_errors=True)
                shutil.rmtree(out["socket_dir"], ignore_errors=True)
                Path(out["log"]).unlink(missing_ok=True)
            runs.append(run)
            print(f"  restore round {i + 1}: {run}", file=sys.stderr)
        facts["restores"] = runs
        facts["restore_wall_median_seconds"] = statistics.median(r["wall_seconds"] for r in runs)
        return facts
    finally:
        c.remove()


def failover_round(base: Path, writes_seconds: float) -> dict:
    primary = Cluster(base, "db1").initdb().start()
    standby = None
    try:
        primary.sql("CREATE DATABASE erp", dbname="postgres")
        primary.sql("CREATE TABLE acks (n int PRIMARY KEY)")
        standby = primary.standby(base, "db2", "db2")
        primary.sql("ALTER SYSTEM SET synchronous_standby_names = 'db2'")
        primary.sql("SELECT pg_reload_conf()")
        while primary.sql("SELECT sync_state FROM pg_stat_replication")[0][0] != "sync":
            time.sleep(0.05)
        data_dir = base / "ops"
        (data_dir / "fleet").mkdir(parents=True)
        pairs = (("db1", primary, "primary"), ("db2", standby, "standby"))
        hosts = {n: {"ansible_host": "127.0.0.1", "pg_port": c.port, "pg_role": r, "pg_data": str(c.data),
                     "ansible_connection": "local"} for n, c, r in pairs}
        (data_dir / "fleet" / "inventory.yml").write_text(yaml.safe_dump({"all": {"children": {
            "database": {"hosts": hosts}}}}))
        acked: list[int] = []

        def writer():
            try:
                with psycopg.connect(**primary.conninfo("erp"), autocommit=True) as conn:
                    for n in range(1, 10**7):
                        conn.execute("INSERT INTO acks VALUES (%s)", (n,))
                        acked.append(n)
            except psycopg.Error:
                pass

        th = threading.Thread(target=writer, daemon=True)
        th.start()
        time.sleep(writes_seconds)
        timed("fleet", "failover", "--check", data_dir=data_dir, database_url="sqlite:///unused")
        primary.stop("immediate")
        th.join(30)
        t, out = timed("fleet", "failover", data_dir=data_dir, database_url="sqlite:///unused")
        present = {r[0] for r in standby.sql("SELECT n FROM acks")}
        return {"wall_seconds": round(t, 2), "promote_seconds": out["promote_seconds"],
                "first_write_seconds": out["first_write_seconds"], "acknowledged_writes": len(acked),
                "acknowledged_writes_lost": len(set(acked) - present), "load": load()}
    finally:
        primary.remove()
        if standby is not None:
            standby.remove()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", type=int, default=70, help="pgbench -i -s (70: about 1.05 GB)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--writes", type=int, default=2000, help="pgbench transactions per client after the backup")
    ap.add_argument("--skip-pitr", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    figures = {"load_before": load()}
    if not args.skip_pitr:
        base = scratch_dir("erpctl-bench-pitr-")
        try:
            figures["pitr"] = pitr_bench(base, args.scale, args.rounds, args.writes)
        finally:
            shutil.rmtree(base, ignore_errors=True)
    rounds = []
    for i in range(args.rounds):
        base = scratch_dir("erpctl-bench-fo-")
        try:
            rounds.append(failover_round(base, 1.0))
            print(f"  failover round {i + 1}: {rounds[-1]}", file=sys.stderr)
        finally:
            shutil.rmtree(base, ignore_errors=True)
    figures["failover"] = {"rounds": rounds, **{f"{k}_median": statistics.median(r[k] for r in rounds)
                                                for k in ("wall_seconds", "promote_seconds", "first_write_seconds")}}
    figures["load_after"] = load()
    if args.json:
        print(json.dumps(figures, indent=2, default=str))
        return
    print(f"load average before {figures['load_before']}, after {figures['load_after']}")
    if "pitr" in figures:
        p = figures["pitr"]
        print(f"PITR: ERP database {p['database_bytes'] / 2**30:.2f} GiB (pgbench -i -s {args.scale}, "
              f"{p['pgbench_init_seconds']} s); setup {p['setup_seconds']} s; full backup {p['backup_seconds']} s "
              f"({p['backup_repo_bytes'] / 2**20:.0f} MiB stored); {p['writes_after_backup']} x 2 pgbench "
              "transactions after it")
        for i, r in enumerate(p["restores"], 1):
            print(f"  restore {i}: {r['wall_seconds']} s wall (pgBackRest restore {r['restore_seconds']} s, WAL "
                  f"replay to the target {r['recovery_seconds']} s, ladder {r['levels']}) load {r['load']}"
                  + (f"; marks restored {r['marks']}" if "marks" in r else ""))
        print(f"  median restore to a time, L1-L4 included: {p['restore_wall_median_seconds']} s")
    f = figures["failover"]
    for i, r in enumerate(f["rounds"], 1):
        print(f"failover {i}: {r['wall_seconds']} s wall, promote {r['promote_seconds']} s, first write "
              f"{r['first_write_seconds']} s; {r['acknowledged_writes']} acknowledged writes, "
              f"{r['acknowledged_writes_lost']} lost; load {r['load']}")
    print(f"median failover: {f['wall_seconds_median']} s wall, promote {f['promote_seconds_median']} s, "
          f"first write {f['first_write_seconds_median']} s")


if __name__ == "__main__":
    main()
