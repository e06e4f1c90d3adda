"""Point-in-time recovery with pgBackRest on a real cluster of the test's own: a restore to a time
between two writes keeps the first and not the second; a restore to just before a transaction leaves
it out; every restore passes the verification ladder; bad targets and a cluster that does not archive
are refused with their fix."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from controlplane import layout
from controlplane.pitr import cluster as pg
from tests.conftest import Erp
from tests.controlplane.pitr.clusters import BIN, Cluster, erp_database, run_erpctl, scratch_dir, tools_or_skip

pytestmark = pytest.mark.postgres


def wait_archived(c: Cluster) -> None:
    """Switch to a new WAL segment and wait (generously) until the archiver has pushed the old one."""
    segment = c.sql("SELECT pg_walfile_name(pg_switch_wal())")[0][0]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        last = c.sql("SELECT last_archived_wal FROM pg_stat_archiver")[0][0]
        if last and last >= segment:
            return
        time.sleep(0.2)
    raise AssertionError(f"WAL segment {segment} was not archived within 120 s")


@pytest.fixture(scope="module")
def live(request):
    """A cluster archiving to pgBackRest through 'erpctl pitr setup --configure', with one full backup."""
    tools_or_skip()
    base = scratch_dir()
    c = Cluster(base, "live").initdb(archive_mode="on").start()
    request.addfinalizer(lambda: (c.remove(), shutil.rmtree(base, ignore_errors=True)))
    url = erp_database(c)
    data_dir = base / "erpctl-data"
    rc, out, err = run_erpctl("pitr", "setup", "--pgbackrest-dir", str(base / "pgbackrest"), "--configure",
                              data_dir=data_dir, database_url=url)
    assert rc == 0, err
    assert "archive-push" in out["archive_command"]
    rc, out, err = run_erpctl("pitr", "backup", data_dir=data_dir, database_url=url)
    assert rc == 0, err
    assert out["type"] == "full"
    erp = Erp(url.replace("postgresql://", "postgresql+psycopg://"), "postgres")
    request.addfinalizer(erp.close)
    return {"cluster": c, "url": url, "data_dir": data_dir, "erp": erp, "base": base}


def drop_kept(out: dict) -> None:
    pg.stop(str(BIN), out["pg_data"], pg.owner(out["pg_data"]), mode="immediate")
    shutil.rmtree(out["pg_data"], ignore_errors=True)
    shutil.rmtree(out["socket_dir"], ignore_errors=True)
    Path(out["log"]).unlink()


def test_restore_to_a_time_between_two_writes_keeps_the_first_not_the_second(live):
    c, erp = live["cluster"], live["erp"]
    erp.customer("FIRST")
    between = c.sql("SELECT clock_timestamp()")[0][0].isoformat()
    time.sleep(0.2)
    erp.customer("SECOND")
    wait_archived(c)
    rc, out, err = run_erpctl("pitr", "restore", "--to", between, "--keep", data_dir=live["data_dir"],
                              database_url=live["url"])
    assert rc == 0, err
    try:
        assert out["ok"] and out["type"] == "time" and out["kept"]
        assert [l["level"] for l in out["verification"]["levels"] if l["ok"]] == [1, 2, 3, 4]
        restored = {"host": "127.0.0.1", "port": out["port"], "user": "postgres", "dbname": "erp"}
        codes = {r[0] for r in pg.query(restored, "SELECT code FROM partners")}
        assert "FIRST" in codes and "SECOND" not in codes
    finally:
        drop_kept(out)
    # the live cluster still has both, and the evidence log names the restore, its target and its levels
    assert {"FIRST", "SECOND"} <= {r[0] for r in c.sql("SELECT code FROM partners")}
    records = [json.loads(l) for l in layout.path(live["data_dir"], "evidence").read_text().splitlines()]
    rec = [r for r in records if r["kind"] == "pitr.restore"][-1]
    assert rec["data"]["to"] and rec["data"]["levels"][-1]["level"] == 4 and rec["outcome"] == "ok"
    rc, audit, err = run_erpctl("audit", "report", "--since", "2000-01-01", data_dir=live["data_dir"],
                                database_url=live["url"])
    assert rc == 0, err
    latest = audit["categories"]["pitr_restore"]["latest"]
    assert latest["what"]["to"] == rec["data"]["to"] and latest["outcome"] == "ok"


def test_restore_to_just_before_a_transaction_leaves_it_out(live):
    c = live["cluster"]
    c.sql("CREATE TABLE IF NOT EXISTS pitr_probe (what text)")
    c.sql("INSERT INTO pitr_probe VALUES ('kept')")
    with pg.connect(c.conninfo("erp")) as conn, conn.transaction():
        xid = conn.execute("SELECT pg_current_xact_id()::text").fetchone()[0]
        conn.execute("INSERT INTO pitr_probe VALUES ('the mistake')")
    wait_archived(c)
    rc, out, err = run_erpctl("pitr", "restore", "--before-xid", xid, "--level", "3", "--keep",
                              data_dir=live["data_dir"], database_url=live["url"])
    assert rc == 0, err
    try:
        assert out["before_xid"] == int(xid) and [l["ok"] for l in out["verification"]["levels"]] == [True] * 3
        restored = {"host": "127.0.0.1", "port": out["port"], "user": "postgres", "dbname": "erp"}
        assert [r[0] for r in pg.query(restored, "SELECT what FROM pitr_probe")] == ["kept"]
    finally:
        drop_kept(out)


@pytest.mark.parametrize("args,says", [
    (["--to", "2001-01-01T00:00:00+00:00"], "before the first backup"),
    (["--to", "2001-01-01 00:00"], "no time zone"),
    (["--to", "yesterday"], "is not a time"),
    (["--before-xid", "abc"], "not a transaction id"),
    (["--to", "2001-01-01T00:00:00Z", "--before-xid", "700"], "two targets"),
    (["--before-xid", "700", "--set", "20010101-000000F"], "not a backup of the repository"),
])
def test_bad_targets_are_refused_before_anything_is_restored(live, args, says, capsys):
    from controlplane.cli.main import main

    with pytest.raises(SystemExit) as exited:  # in this process: the same main() the console script runs
        main(["--json", "pitr", "restore", *args, "--data-dir", str(live["data_dir"]), "--database-url", live["url"]])
    err = next(json.loads(ln)["error"] for ln in capsys.readouterr().err.splitlines() if ln.startswith('{"error"'))
    assert exited.value.code == 114, err
    assert says in err["detail"] and err["fix"]
    assert not list((live["base"] / "pgbackrest" / "restores").iterdir())


def test_status_shows_backups_archive_and_window(live):
    rc, out, err = run_erpctl("pitr", "status", data_dir=live["data_dir"], database_url=live["url"])
    assert rc == 0, err
    assert out["backups"][0]["type"] == "full" and out["archiver"]["failed_count"] == 0
    assert out["recoverable_window"]["from"] == out["backups"][0]["stopped"]


def test_erpctl_up_schedules_backups_and_verification_once_set_up(live):
    from controlplane import config
    from controlplane.scheduler import JobContext, collect_jobs

    jobs = {j.id: j for j in collect_jobs(JobContext(config.resolve(live["data_dir"], live["url"]), "http://x"))}
    assert {"pitr.backup", "pitr.backup.diff", "pitr.verify"} <= set(jobs)
    assert "fleet.replication_check" not in jobs  # no standby in this installation's inventory


def test_a_cluster_that_does_not_archive_is_refused_with_the_lines_to_set(tmp_path):
    tools_or_skip()
    base = scratch_dir()
    c = Cluster(base, "plain").initdb().start()
    try:
        rc, _out, err = run_erpctl("pitr", "setup", "--pgbackrest-dir", str(base / "pgbackrest"),
                                   data_dir=tmp_path / "d", database_url=c.url("postgres"))
        assert rc == 113, err
        assert "archive_mode" in err["detail"] and "ALTER SYSTEM SET archive_command" in err["fix"]
        rc, _out, err = run_erpctl("pitr", "status", data_dir=tmp_path / "other", database_url=c.url("postgres"))
        assert rc == 113 and "erpctl pitr setup" in err["fix"]
    finally:
        c.remove()
        shutil.rmtree(base, ignore_errors=True)


def test_verify_restores_the_newest_backup_and_the_whole_archive(live):
    live["erp"].customer("LAST")
    wait_archived(live["cluster"])
    rc, out, err = run_erpctl("pitr", "verify", "--level", "3", data_dir=live["data_dir"], database_url=live["url"])
    assert rc == 0, err
    assert out["type"] == "end-of-archive" and out["ok"] and not out["kept"]
    assert [l["name"] for l in out["verification"]["levels"]] == ["repository", "engine", "content"]
    assert not list((live["base"] / "pgbackrest" / "restores").iterdir())  # removed once proven


def test_an_unreachable_repository_is_named_with_its_fix(live):
    repo = live["base"] / "pgbackrest" / "repo"
    repo.chmod(0o000)
    try:
        rc, _out, err = run_erpctl("pitr", "backup", data_dir=live["data_dir"], database_url=live["url"])
    finally:
        repo.chmod(0o750)
    assert rc == 118, err
    assert str(repo) in err["detail"] and "writable" in err["fix"]


def test_a_restore_that_breaks_an_invariant_fails_L3_and_is_removed(live):
    c, erp = live["cluster"], live["erp"]
    wh, supplier, product = erp.warehouse("WHP"), erp.supplier("SP"), erp.product("PP")
    erp.stock_in(supplier, wh, [(product, 5, "10.00")])
    c.sql("UPDATE stock_levels SET quantity = quantity + 7 WHERE product_id = %s", params=(product,))  # behind the ERP
    broken = c.sql("SELECT clock_timestamp()")[0][0].isoformat()
    c.sql("UPDATE stock_levels SET quantity = quantity - 7 WHERE product_id = %s", params=(product,))
    wait_archived(c)
    rc, _out, err = run_erpctl("pitr", "restore", "--to", broken, "--keep", data_dir=live["data_dir"],
                               database_url=live["url"])
    assert rc == 115, err
    assert "L3" in err["detail"] and "on_hand_matches_moves" in json.dumps(err["result"]) and err["fix"]
    assert not list((live["base"] / "pgbackrest" / "restores").iterdir())  # --keep keeps only what passed
    records = [json.loads(l) for l in layout.path(live["data_dir"], "evidence").read_text().splitlines()]
    assert [r for r in records if r["kind"] == "pitr.restore"][-1]["outcome"] == "failed"
