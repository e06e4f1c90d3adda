"""The faults a drill injects into its sandbox, for real, and what it does for people: at a runbook's
manual step or before the recovery starts (actions), and in its clean-up (which always runs).

Faults never touch anything outside the sandbox: its ERP process, its database (its own SQLite file or
its own scratch PostgreSQL database), its backup repository, its data directory. Faults of the control
plane's own operations go through its failpoints (controlplane/faults.py, ERPCTL_FAILPOINTS).
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import time

from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from erp_core import ops

from .. import layout
from ..errors import DrillError
from .sandbox import Sandbox

DAMAGE = b"\xde\xad\xbe\xef" * 1024   # what a failing disk leaves in a page
DEFAULT_TABLES = {"corrupt-database": "partners", "delete-rows": "sales_order_lines"}
STORE_AWAY = ".unreachable"
UPGRADE_FAILPOINT = "upgrade.backfill.batch"  # upgrade-killed: where the upgrade is killed by default
UPGRADE_REACH_SECONDS = 300.0
PG_LOCK_TIMEOUT = "2s"
PG_DROP_TRIES = 30
PG_RETRY = {"55P03", "40P01"}  # lock_not_available, deadlock_detected


class Injector:
    """One drill's faults, actions and clean-ups, with what they need to undo."""

    def __init__(self, box: Sandbox):
        self.box = box
        self.stopped_pid: int | None = None
        self.detail: dict = {}

    # -------------------------------------------------------------------------------- faults

    def inject(self, kind: str, table: str | None, pg_table: str | None = None) -> dict:
        table = (pg_table if self.box.database_url and pg_table else table) or DEFAULT_TABLES.get(kind)
        handler = getattr(self, "_" + kind.replace("-", "_"), None)
        if handler is None:
            raise DrillError(f"fault {kind!r} cannot be injected by this erpctl",
                             fix="Run another scenario (erpctl drill scenarios); the scenario's README says why.")
        self.detail = handler(table) or {}
        return self.detail

    def _kill_erp(self, _table) -> dict:
        pid = self._serving()
        os.kill(pid, signal.SIGKILL)
        return {"signal": "SIGKILL", "pid": pid}

    def _hang_erp(self, _table) -> dict:
        """Every process of the ERP stopped: the child erpctl up runs and, when several workers serve, the
        workers too (they share its process group); its port accepts connections and nothing answers."""
        pid = self._serving()
        os.killpg(pid, signal.SIGSTOP)
        self.stopped_pid = pid
        return {"signal": "SIGSTOP", "pid": pid, "process_group": True}

    def _serving(self) -> int:
        pid = self.box.serving_pid()
        if not pid:
            raise DrillError("the sandbox's erpctl up serves no ERP child to signal",
                             fix="Run the drill with --keep and read its sandbox's up.log.")
        return pid

    def _corrupt_database(self, table: str) -> dict:
        if self.box.database_url is None:
            return self._damage_sqlite_table(table)
        return self._drop_pg_table(table)

    def _drop_pg_table(self, table: str) -> dict:
        """DROP TABLE ... CASCADE while the workload writes: it needs the table and the tables its foreign
        keys name, which the workload's transactions hold, so it waits at most PG_LOCK_TIMEOUT for them
        and is tried again when it waited too long or PostgreSQL chose it as a deadlock's victim."""
        for attempt in range(1, PG_DROP_TRIES + 1):
            try:
                self._sql(f"SET LOCAL lock_timeout = '{PG_LOCK_TIMEOUT}'", f'DROP TABLE "{table}" CASCADE')
                return {"table": table, "how": "DROP TABLE ... CASCADE", "attempts": attempt}
            except OperationalError as exc:
                code = getattr(exc.orig, "sqlstate", None)
                if code not in PG_RETRY or attempt == PG_DROP_TRIES:
                    raise DrillError(f"the fault could not be injected: DROP TABLE {table} failed ({code}: "
                                     f"{str(exc.orig).strip().splitlines()[0]}) after {attempt} attempt(s)",
                                     fix="Run the drill again; pg_stat_activity shows what held the table.") from exc
                time.sleep(0.2)
        raise AssertionError("unreachable")

    def _damage_sqlite_table(self, table: str) -> dict:
        """The root page of `table` (a table or an index; the file checkpointed first so the WAL holds no newer
        copy of it) overwritten with garbage, as a failing disk would leave them."""
        path = layout.path(self.box.data_dir, "database")
        with sqlite3.connect(path, timeout=30) as c:
            c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            page_size = c.execute("PRAGMA page_size").fetchone()[0]
            row = c.execute("SELECT rootpage FROM sqlite_master WHERE type IN ('table', 'index') AND name=?",
                            (table,)).fetchone()
        if row is None:
            raise DrillError(f"no table or index {table!r} in the sandbox's database",
                             fix="Correct the scenario's fault.table.")
        fd = os.open(path, os.O_WRONLY)
        try:
            os.pwrite(fd, DAMAGE[:page_size], (row[0] - 1) * page_size)
            os.fsync(fd)
        finally:
            os.close(fd)
        return {"table": table, "page": row[0], "bytes": page_size}

    def _delete_rows(self, table: str) -> dict:
        """Rows deleted by mistake, as a wrong DELETE typed at a SQL prompt would: half of the table's
        oldest rows (the workload's newest are left alone)."""
        n = self._sql(f'DELETE FROM "{table}" WHERE id IN (SELECT id FROM "{table}" ORDER BY id '
                      f'LIMIT (SELECT COUNT(*) / 2 + 1 FROM "{table}"))')
        return {"table": table, "rows": n}

    def _sql(self, *statements: str) -> int:
        url = self.box.database_url or f"sqlite:///{layout.path(self.box.data_dir, 'database')}"
        eng = create_engine(ops.normalise_url(url))
        try:
            with eng.begin() as c:
                return [c.execute(text(st)).rowcount for st in statements][-1]
        finally:
            eng.dispose()

    def _disk_full(self, _table) -> dict:
        """The scheduled backup runs on a full disk (failpoint errno:ENOSPC where its packs are written)."""
        r = self.box.erpctl("backup", "create", ERPCTL_FAILPOINTS="backup.pack.uploaded=errno:ENOSPC")
        return {"failpoint": "backup.pack.uploaded=errno:ENOSPC", "exit_code": r.returncode,
                "said": (r.stderr or r.stdout).strip()[-300:]}

    def _backup_store_unreachable(self, _table) -> dict:
        """The backup store's directory gone (a lost mount): the next scheduled backup fails."""
        repo = layout.path(self.box.data_dir, "backups")
        repo.rename(repo.with_name(repo.name + STORE_AWAY))
        return {"store": str(repo), "how": "its directory moved away"}

    def _field_key_lost(self, _table) -> dict:
        """The sandbox's field-encryption key file deleted (a wrong `rm`, a data directory copied without it):
        the ERP serving keeps the key it loaded; every command and restart after this has none."""
        from ..escrow import fingerprint

        path = layout.path(self.box.data_dir, "field_key")
        fp = fingerprint(path.read_text())
        path.unlink()
        return {"file": str(path), "how": "deleted", "key_fingerprint": fp}

    def _upgrade_killed(self, _table) -> dict:
        """`erpctl upgrade apply` to this erpctl's release, held at a failpoint half-way (its backfill by
        default: expanded schema, rows half filled, the old release serving) and killed there (SIGKILL), as a
        power cut or an out-of-memory kill would leave it. The fault's time is the kill."""
        import time

        point = getattr(self, "failpoint", None) or UPGRADE_FAILPOINT
        pause = self.box.root / "upgrade-paused"
        proc = self.box.popen("upgrade", "apply", "--erp-url", self.box.erp_url,
                              ERPCTL_FAILPOINTS=f"{point}=pause:{pause}")
        deadline = time.monotonic() + UPGRADE_REACH_SECONDS
        while not pause.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if not pause.exists():
            proc.kill()
            _, err = proc.communicate(timeout=30)
            raise DrillError(f"erpctl upgrade apply did not reach {point} (exit {proc.returncode}): "
                             f"{(err or '').strip()[-600:]}",
                             fix="Run 'erpctl upgrade plan' in a copy of the installation: the upgrade must have a "
                                 "backfill to stop in, or name another fault.failpoint.")
        os.kill(proc.pid, signal.SIGKILL)
        at = time.time()
        proc.communicate(timeout=30)
        pause.unlink()
        return {"failpoint": point, "pid": proc.pid, "signal": "SIGKILL", "release": self.box.release,
                "fault_at": at}

    # ------------------------------------------------------------------------------- actions

    def act(self, action: str) -> str:
        """What a person does at a manual step, or before the recovery; a sentence for the timeline."""
        if action == "maintenance-on":
            self.box.ok("erp", "maintenance", "on", "--reason", "drill: restoring the last backup")
            return "maintenance mode switched on (before listing what the restore discards)"
        if action == "store-back":
            return self._store_back()
        if action == "wait-ready":
            self.box.wait_ready()
            return "waited until the ERP is ready"
        raise DrillError(f"action {action!r} is not available", fix="Correct the scenario.")

    def _store_back(self) -> str:
        repo = layout.path(self.box.data_dir, "backups")
        away = repo.with_name(repo.name + STORE_AWAY)
        if not away.exists():
            return "the backup store was reachable"
        if repo.exists():  # what the failed scheduled backups left where the store was (the mount point)
            shutil.rmtree(repo)
        away.rename(repo)
        return "the backup store is reachable again (its directory back)"

    # ------------------------------------------------------------------------------ clean-up

    def clean(self, action: str) -> str:
        if action == "resume-erp":
            if self.stopped_pid:
                try:
                    os.killpg(self.stopped_pid, signal.SIGCONT)
                except ProcessLookupError:
                    return f"the stopped ERP ({self.stopped_pid}) is gone"
                return f"SIGCONT sent to the stopped ERP ({self.stopped_pid})"
            return "no ERP was stopped"
        if action == "store-back":
            return self._store_back()
        if action == "maintenance-off":
            r = self.box.erpctl("erp", "maintenance", "off")
            return f"maintenance off (exit {r.returncode})"
        return f"{action}: nothing to do"
