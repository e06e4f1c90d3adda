"""For each runbook: the condition it answers, caused for real on a live installation where that is cheap
and safe, and the manual work its manual steps ask of people, done the way a person would (the ERP's API,
a command). A runbook without a cause here runs on a healthy installation: its Confirm steps find
nothing (or report findings) and every step still runs.

Never the shared PostgreSQL server: the database fault is the installation's own database refusing
connections (ALTER DATABASE ... ALLOW_CONNECTIONS false, its sessions ended), switched back by the manual
step ("bring the database back")."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Callable

import requests

from .harness import StepResult
from .live import Live, until


@dataclass
class Condition:
    cause: Callable[[Live], None] | None = None
    manual: Callable[[Live, StepResult], None] | None = None
    what: str = "absent: the runbook runs on a healthy installation"
    never_backed_up: bool = False    # an installation that has never had a backup
    pipeline: bool = False           # needs real Prometheus and Alertmanager (tests/monitors/alerting.py)
    # An installation of its own, built by installation(root, backend, resources) from the session fixtures
    # named in resources (the test resolves them).
    installation: Callable[[Path, str, dict], Live] | None = None
    resources: tuple[str, ...] = ()
    # The runbook's --param NAME=VALUE, from the installation once the condition is caused (what an engineer
    # reads from a listing and passes on, as DISCARD_WRITES).
    params: Callable[[Live], dict[str, str]] | None = None
    after: Callable[[Live], None] | None = None  # what the recovery must have done, beyond Check recovery


def _refused(url: str) -> bool:
    try:
        requests.get(url, timeout=2)
        return False
    except requests.ConnectionError:
        return True


def _kill(pid: int | None) -> None:
    if pid:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass


# -------------------------------------------------------------------------------- processes

def kill_erpctl_up(live: Live) -> None:
    """`erpctl up` itself dies (SIGKILL): the ops console stops answering."""
    _kill(live.runtime().pid)
    until("the ops console stops answering", lambda: _refused(live.ops_url + "/healthz"), 15)


def kill_everything(live: Live) -> None:
    """`erpctl up` and then the ERP it served die (SIGKILL): nothing answers on the ERP's port."""
    erp_pid = (live.serving() or type("S", (), {"pid": None})).pid
    kill_erpctl_up(live)
    _kill(erp_pid)
    until("the ERP stops answering", lambda: _refused(live.erp_url + "/healthz"), 15)


def crash_loop(live: Live, crashes: int = 2) -> None:
    """The ERP child is killed again and again; `erpctl up` restarts it each time (with a back-off)."""
    for _ in range(crashes):
        old = live.serving().pid
        _kill(old)
        until("the ERP restarted", lambda o=old: (lambda s: s and s.pid != o and s.state == "serving")(live.serving())
              and requests.get(live.erp_url + "/healthz", timeout=2).ok, 30)


def wait_serving(live: Live, step: StepResult) -> None:
    """The person finds nothing left to fix (the crashes were ours) and waits until the ERP serves. The
    probes that failed meanwhile are not waited for: `erpctl status` in Check recovery runs them again."""
    live.wait_ready()


# --------------------------------------------------------------------------------- database

def database_refuses(live: Live) -> None:
    """PostgreSQL: the installation's database refuses connections and its sessions end.
    SQLite: nothing cheap and safe makes the file unreadable to root, so the condition is absent."""
    if live.backend != "postgresql":
        return
    live.pg_sql(f'ALTER DATABASE "{live.database}" ALLOW_CONNECTIONS false',
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                f"WHERE datname = '{live.database}' AND pid <> pg_backend_pid()")
    until("the ERP reports its database down",
          lambda: requests.get(live.erp_url + "/readyz", timeout=5).status_code == 503, 20)


def database_back(live: Live, step: StepResult) -> None:
    """The manual step "bring the database back": the database accepts connections again, and the person
    waits until the ERP is ready. The scheduled checks that failed meanwhile (the invariants check runs every
    ten minutes as shipped) are not waited for: `erpctl status` in Check recovery runs them again."""
    if live.backend != "postgresql":
        return
    live.pg_sql(f'ALTER DATABASE "{live.database}" ALLOW_CONNECTIONS true')
    live.wait_ready()


# --------------------------------------------------------------------------------- business

def low_stock(live: Live) -> None:
    """A product with a reorder rule (minimum 10) and no stock in a warehouse."""
    n = os.urandom(3).hex()
    wh = live.api("POST", "/warehouses", {"code": f"W{n}", "name": f"Warehouse {n}"}, expect=201)["id"]
    product = live.api("POST", "/products", {"sku": f"P{n}", "name": f"Product {n}", "sale_price": "10.00",
                                             "tax_code": "VAT13"}, expect=201)["id"]
    live.api("PUT", "/stock/reorder-rules", {"product_id": product, "warehouse_id": wh, "min_quantity": "10",
                                              "reorder_quantity": "25"})
    assert any(row.get("product_id") == product for row in _low(live)), _low(live)


def _low(live: Live) -> list[dict]:
    body = live.api("GET", "/stock/low")
    return body["items"] if isinstance(body, dict) else body


def order_and_receive(live: Live, step: StepResult) -> None:
    """The purchasing team orders what is low from a supplier, confirms the order and receives the goods."""
    n = os.urandom(3).hex()
    supplier = live.api("POST", "/partners", {"code": f"S{n}", "name": f"Supplier {n}", "is_supplier": True},
                        expect=201)["id"]
    for row in _low(live):
        qty = Decimal(str(row.get("reorder_quantity") or row.get("min_quantity") or 10))
        po = live.api("POST", "/purchase-orders", {"partner_id": supplier, "warehouse_id": row["warehouse_id"],
                                                   "lines": [{"product_id": row["product_id"], "quantity": str(qty),
                                                              "unit_price": "4.00"}]}, expect=201)
        live.api("POST", f"/purchase-orders/{po['id']}/confirm")
        live.api("POST", f"/purchase-orders/{po['id']}/receive")
    assert not _low(live), _low(live)


def maintenance_on(live: Live) -> None:
    live.ok("erp", "maintenance", "on", "--reason", "planned work, forgotten")


# ----------------------------------------------------------------------------------- backups

def damage_a_pack(live: Live) -> None:
    """The scheduled backup runs; then a byte of its last chunk flips in its pack (a disk error), and the
    verification that follows fails and is recorded, as the scheduled one would be."""
    from controlplane.backup.pack import pack_key
    from controlplane.backup.repository import open_repository

    made = json.loads(live.ok("--json", "backup", "create").stdout)
    repo = open_repository(f"file://{live.data_dir / 'backups'}", key_file=live.key_file)
    repo.load_index()
    loc = repo.index[bytes.fromhex(repo.load_manifest(made["id"]).chunks[-1])]
    path = live.data_dir / "backups" / pack_key(loc.pack)
    data = bytearray(path.read_bytes())
    data[loc.offset + loc.length // 2] ^= 0x01
    path.write_bytes(bytes(data))
    r = live.erpctl("backup", "verify", "--level", "1", "latest")
    assert r.returncode == 28, r.stdout + r.stderr


# --------------------------------------------------------------------------------- alerting

def stop_alertmanager(live: Live) -> None:
    live.pipeline.alertmanager.stop()


def start_alertmanager(live: Live, step: StepResult) -> None:
    """The manual step "start what stopped": Alertmanager again, same flags, same port."""
    from tests.monitors.conftest import Process, wait_http

    old = live.pipeline.alertmanager
    live.pipeline.alertmanager = Process(old.proc.args, old.log_path.with_suffix(".again.log"))
    wait_http(live.pipeline.am_url + "/-/ready", live.pipeline.alertmanager, timeout=30)


# ----------------------------------------------------------------------------------- upgrades

def release_1_0_installation(root: Path, backend: str, resources: dict) -> Live:
    """`erpctl up` serving release 1.0 on a 1.0 database (the upgrade tests' fixtures: both releases
    installed once a session, the committed SQLite database or a PostgreSQL copy of 1.0's own), with this
    tree's release installed beside it and a backup repository: an installation an upgrade can start on."""
    from controlplane import release
    from controlplane.config import Target
    from tests.controlplane.release_helpers import DB_1_0, FIXTURE_KEY
    from tests.controlplane.upgrade.conftest import NEW, OLD

    live = Live(root, backend, template=resources.get("pg_1_0_template"))
    try:
        d = live.data_dir
        (d / "releases").mkdir(parents=True)
        for version in (OLD, NEW):
            os.symlink(resources["release_store"] / version, d / "releases" / version)
        url = live.database_url
        if backend == "sqlite":
            shutil.copy(DB_1_0, d / "erp.sqlite3")
            url = f"sqlite:///{d / 'erp.sqlite3'}"
        release.set_current(Target(d, url), OLD, check_schema=False)  # the fixture databases are 1.0's own
        live.process_env["ERP_FIELD_KEY"] = FIXTURE_KEY
        live.start()
        live.ok("backup", "init", "--key-file", live.key_file)
    except BaseException:
        live.close()
        raise
    return live


def interrupt_an_upgrade(live: Live) -> None:
    """`erpctl upgrade apply` to this tree's release, held in its backfill stage by a failpoint, then SIGKILLed:
    `erpctl upgrade status` says interrupted (exit 47)."""
    from tests.controlplane.cli_helpers import erpctl_path

    pause = live.root / "paused-in-backfill"
    proc = subprocess.Popen([erpctl_path(), "upgrade", "apply", "--confirm-contract"], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**live.erpctl_env(), "ERPCTL_FAILPOINTS": f"upgrade.backfill.batch=pause:{pause}"})
    try:
        until("the upgrade held in its backfill stage", lambda: pause.exists() or proc.poll() is not None, 120)
        assert proc.poll() is None, proc.communicate()
    finally:
        _kill(proc.pid)
        proc.wait(timeout=30)
    pause.unlink()
    r = live.erpctl("upgrade", "status")
    assert r.returncode == 47, r.stdout + r.stderr


# ----------------------------------------------------------------------- restores and the field key

def write_by_mistake(live: Live) -> None:
    """A partner entered after the backup (the write to undo): the restore discards it, listed first."""
    n = os.urandom(3).hex()
    live.api("POST", "/partners", {"code": f"M{n}", "name": f"Mistake {n}", "is_customer": True}, expect=201)


def agreed_loss(live: Live) -> dict[str, str]:
    """DISCARD_WRITES: the number of writes `erpctl backup restore --dry-run` lists, as the business agrees it."""
    found = json.loads(live.ok("--json", "backup", "restore", "--dry-run", "latest").stdout)
    assert found["count"] >= 1, found
    return {"DISCARD_WRITES": str(found["count"])}


def writes_discarded(live: Live) -> None:
    """The restore took the database back to the backup: nothing is left to discard."""
    found = json.loads(live.ok("--json", "backup", "restore", "--dry-run", "latest").stdout)
    assert found["count"] == 0, found


ESCROW_PASSPHRASE = "the escrow keepers' passphrase"


def lose_the_field_key(live: Live) -> None:
    """The key is escrowed and a partner with encrypted fields entered; then `erpctl up` is stopped, field.key
    overwritten with another key (as when it is lost and a new one made), and started again: the ERP serves
    with a key that opens none of the stored values (`erpctl field-key check` exits 92)."""
    from controlplane import layout

    live.process_env["ERPCTL_ESCROW_PASSPHRASE"] = ESCROW_PASSPHRASE
    live.ok("field-key", "escrow")
    n = os.urandom(3).hex()
    live.api("POST", "/partners", {"code": f"K{n}", "name": f"Keyed {n}", "is_customer": True,
                                   "tax_id": "91310000MA1FL0000X", "phone": "13800000000"}, expect=201)
    live.ok("stop")
    layout.path(live.data_dir, "field_key").write_text(base64.urlsafe_b64encode(os.urandom(32)).decode() + "\n")
    live.ok("restart")
    live.wait_ready()
    r = live.erpctl("field-key", "check")
    assert r.returncode == 92, r.stdout + r.stderr


CONDITIONS: dict[str, Condition] = {
    "ErpDown": Condition(kill_everything, what="erpctl up and its ERP killed (SIGKILL)"),
    "ControlPlaneDown": Condition(kill_erpctl_up, what="erpctl up killed (SIGKILL)"),
    "ErpCrashLooping": Condition(crash_loop, wait_serving, what="the ERP child killed twice, restarted each time"),
    "ErpDatabaseDown": Condition(database_refuses, database_back,
                                 what="PostgreSQL: the database refuses connections; SQLite: absent"),
    "ErpNotReady": Condition(database_refuses, database_back,
                             what="PostgreSQL: the database refuses connections; SQLite: absent"),
    "ErpMaintenanceModeLong": Condition(maintenance_on, what="maintenance mode switched on and left on"),
    "LowStock": Condition(low_stock, order_and_receive, what="a product with a reorder rule and no stock"),
    "BackupVerificationFailed": Condition(damage_a_pack, what="a byte of a pack flipped, L1 verification failed"),
    "BackupMissing": Condition(never_backed_up=True, what="a new installation with a repository and no backup"),
    "UpgradeStuck": Condition(interrupt_an_upgrade, what="erpctl upgrade apply SIGKILLed in its backfill stage",
                              installation=release_1_0_installation, resources=("release_store", "pg_1_0_template")),
    "RestoreFromBackup": Condition(write_by_mistake, params=agreed_loss, after=writes_discarded,
                                   what="a partner entered after the backup; restored with DISCARD_WRITES agreed"),
    "FieldKeyLost": Condition(lose_the_field_key, what="field.key overwritten with another key, erpctl up "
                                                       "restarted on it (the key escrowed before)"),
    "Watchdog": Condition(stop_alertmanager, start_alertmanager, pipeline=True,
                          what="Alertmanager stopped (real Prometheus and Alertmanager)"),
}


def condition(name: str) -> Condition:
    return CONDITIONS.get(name, Condition())
