"""Failover to a streaming standby on real clusters of the test's own: with synchronous commit every
acknowledged write survives the primary's crash; asynchronous, the loss window is measured and
reported; the app hosts' database URL follows the new primary; a primary that still answers is not
failed over from without --force."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time

import psycopg
import pytest
import yaml

from controlplane.installation import Installation
from tests.controlplane.pitr.clusters import Cluster, run_erpctl, scratch_dir, tools_or_skip
from tests.controlplane.remote.sshd import start_hosts

pytestmark = pytest.mark.postgres


@pytest.fixture
def pair(request):
    """A primary (database 'erp', table acks) and its streaming standby 'db2'; an app host's data
    directory pointing at the primary; the inventory naming them."""
    tools_or_skip()
    base = scratch_dir()
    primary = Cluster(base, "db1").initdb().start()
    primary.sql("CREATE DATABASE erp", dbname="postgres")
    primary.sql("CREATE TABLE acks (n int PRIMARY KEY)")
    standby = primary.standby(base, "db2", "db2")
    request.addfinalizer(lambda: (primary.remove(), standby.remove(), shutil.rmtree(base, ignore_errors=True)))
    data_dir, app = base / "ops", base / "app1"
    (data_dir / "fleet").mkdir(parents=True)
    app.mkdir()
    (app / "erpctl.toml").write_text(f'# the app host\n[database]\nurl = "{primary.url()}"\n\n[backup]\nrepo = "x"\n')
    inventory = {"all": {"children": {
        "database": {"hosts": {
            "db1": {"ansible_host": "127.0.0.1", "pg_port": primary.port, "pg_role": "primary",
                    "pg_data": str(primary.data), "ansible_connection": "local"},
            "db2": {"ansible_host": "127.0.0.1", "pg_port": standby.port, "pg_role": "standby",
                    "pg_data": str(standby.data), "ansible_connection": "local"}}},
        "app": {"hosts": {"app1": {"ansible_connection": "local", "erp_root": str(app)}}}}}}
    (data_dir / "fleet" / "inventory.yml").write_text(yaml.safe_dump(inventory))
    return {"primary": primary, "standby": standby, "data_dir": data_dir, "app": app}


def erpctl(pair, *args):
    return run_erpctl("fleet", "failover", *args, data_dir=pair["data_dir"], database_url="sqlite:///unused")


class Writer(threading.Thread):
    """Writes n = 1, 2, ... one acknowledged commit each, until the primary stops answering."""

    def __init__(self, c: Cluster):
        super().__init__(daemon=True)
        self.c, self.acked = c, []

    def run(self):
        try:
            with psycopg.connect(**self.c.conninfo("erp"), autocommit=True) as conn:
                for n in range(1, 10**6):
                    conn.execute("INSERT INTO acks VALUES (%s)", (n,))
                    self.acked.append(n)  # the commit returned: acknowledged
        except psycopg.Error:
            pass


def wait_for(cond, what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not cond():
        assert time.monotonic() < deadline, f"{what} within {seconds}s"
        time.sleep(0.05)


def test_synchronous_failover_loses_no_acknowledged_write_and_repoints_the_app(pair):
    primary, standby = pair["primary"], pair["standby"]
    for c in (primary, standby):  # the same configuration on both, as hosts built alike have
        c.sql("ALTER SYSTEM SET synchronous_standby_names = 'db2'")
        c.sql("SELECT pg_reload_conf()")
    wait_for(lambda: primary.sql("SELECT sync_state FROM pg_stat_replication")[0][0] == "sync", "standby in sync")
    rc, _out, err = erpctl(pair)
    assert rc == 116 and "still answers" in err["detail"] and "--force" in err["fix"]
    writer = Writer(primary)
    writer.start()
    wait_for(lambda: len(writer.acked) >= 100, "100 acknowledged writes")
    rc, check, err = erpctl(pair, "--check")
    assert rc == 0, err
    assert check["synchronous"] and check["sync_state"] == "sync" and check["acknowledged_writes_at_risk"] == 0
    primary.stop("immediate")  # the primary crashes in the middle of the stream of writes
    writer.join(30)
    rc, out, err = erpctl(pair)
    assert rc == 0, err
    assert out["new_primary"] == "db2" and not out["old_primary_answered"]
    assert out["loss"]["synchronous"] and out["loss"]["acknowledged_writes_lost"] == 0
    assert out["synchronous_standby_names_cleared"]
    present = {r[0] for r in standby.sql("SELECT n FROM acks")}
    assert set(writer.acked) <= present, f"{len(set(writer.acked) - present)} acknowledged write(s) lost"
    standby.sql(f"INSERT INTO acks VALUES ({10**6 + 1})")  # the new primary takes writes
    assert out["first_write_seconds"] >= out["promote_seconds"] > 0
    # the app host now points at the promoted standby; the rest of its erpctl.toml is as it was
    app = Installation.open(pair["app"])
    assert f":{standby.port}/erp" in app.database_url
    assert '[backup]\nrepo = "x"' in (pair["app"] / "erpctl.toml").read_text()
    assert out["app_hosts"][0]["outcome"] == "repointed"
    rc, audit, err = run_erpctl("audit", "report", "--since", "2000-01-01", data_dir=pair["data_dir"],
                                database_url="sqlite:///unused")
    assert rc == 0, err
    assert audit["categories"]["failover"]["latest"]["what"] == {"new_primary": "db2"}


def test_asynchronous_failover_reports_the_loss_window_it_measured(pair):
    """The lag is checked by erpctl up's scheduled job (as in production), then the primary dies."""
    from controlplane import config, results
    from controlplane.scheduler import JobContext, collect_jobs

    primary, standby = pair["primary"], pair["standby"]
    standby.sql("SELECT pg_wal_replay_pause()")  # the standby falls behind, as a slow one does
    for n in range(1, 31):
        primary.sql("INSERT INTO acks VALUES (%s)", params=(n,))
    jobs = {j.id: j for j in collect_jobs(JobContext(config.resolve(pair["data_dir"], "sqlite:///unused"), "http://x"))}
    assert "pitr.backup" not in jobs  # point-in-time recovery is not set up on this data directory
    check = jobs["fleet.replication_check"].func()
    assert results.read(pair["data_dir"])["fleet.replication"].value("lag_bytes") == check["lag_bytes"]
    assert not check["synchronous"] and check["lag_bytes"] > 0 and check["lag_transactions"] >= 30
    assert check["acknowledged_writes_at_risk"] == check["lag_transactions"]
    primary.stop("immediate")
    rc, out, err = erpctl(pair)
    assert rc == 0, err
    loss = out["loss"]
    assert not loss["synchronous"] and loss["acknowledged_writes_at_risk"] == check["lag_transactions"]
    assert loss["lag_bytes"] == check["lag_bytes"] and "last check" in loss["measured"]
    lost = 30 - standby.sql("SELECT count(*) FROM acks")[0][0]
    assert 0 <= lost <= loss["acknowledged_writes_at_risk"]


def test_force_fences_a_primary_that_still_answers_and_repoints_a_remote_app_host(pair, tmp_path):
    primary, standby = pair["primary"], pair["standby"]
    # a second app host reached over SSH (a real sshd, its key trusted as the fleet commands require)
    servers, client = start_hosts(tmp_path, 1)
    try:
        remote_root = tmp_path / "app2"
        remote_root.mkdir()
        old_url = f"postgresql://erp:s3cret@127.0.0.1:{primary.port}/erp"
        (remote_root / "erpctl.toml").write_text(f'[database]\nurl = "{old_url}"\n')
        inv_path = pair["data_dir"] / "fleet" / "inventory.yml"
        inv = yaml.safe_load(inv_path.read_text())
        inv["all"]["children"]["app"]["hosts"]["app2"] = {
            "ansible_host": "127.0.0.1", "ansible_port": servers[0].port, "erp_root": str(remote_root),
            "ansible_user": os.environ.get("USER") or "root", "ansible_ssh_private_key_file": str(client)}
        inv_path.write_text(yaml.safe_dump(inv))
        rc, _out, err = run_erpctl("fleet", "trust", "app2", "--fingerprint", servers[0].fingerprint,
                                   data_dir=pair["data_dir"], database_url="sqlite:///unused")
        assert rc == 0, err
        primary.sql("INSERT INTO acks VALUES (1)")
        rc, out, err = erpctl(pair, "--force")
    finally:
        servers[0].stop()
    assert rc == 0, err
    assert out["old_primary_answered"] and "stopped" in out["fence"]
    assert out["loss"]["measured"] == "at promotion" and out["loss"]["lag_bytes"] == 0
    assert not (primary.data / "postmaster.pid").exists()
    assert standby.sql("SELECT n FROM acks") == [(1,)]
    assert [r["outcome"] for r in out["app_hosts"]] == ["repointed", "repointed"]
    remote = Installation.open(remote_root)
    assert remote.database_url.endswith(f"@127.0.0.1:{standby.port}/erp") and "s3cret" in remote.database_url
    assert "s3cret" not in json.dumps(out)  # the password is kept in the file, never shown
