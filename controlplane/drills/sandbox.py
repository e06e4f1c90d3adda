"""The drill's sandbox: a data directory of its own (drills/<id>/sandbox/), free ports, on PostgreSQL a
scratch database of its own, restored from the installation's latest backup (the restore verifies it
first: every drill is a restore test) or, with --fresh, migrated and seeded from scratch; served by the
current release through `erpctl up`, as a process of its own. Every erpctl command runs as a process,
as an operator would run it. `destroy()` leaves nothing: processes, ports, directory, database.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import requests
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from .. import layout, procs
from erp_core import ops

from ..errors import DrillError, NoBackupForDrill
from ..installation import Installation
from ..runbook.environment import erpctl_program

USER = "drill"
READY_TIMEOUT = 60.0
# The sandbox's probes run often, so that the control plane's own detection is what a drill measures.
SCHEDULES = {"probe.readyz": "1s", "probe.business": "2s", "probe.db_integrity": "2s", "invariants": "3s",
             "probe.disk_headroom": "2s", "probe.backup_freshness": "2s"}
# Variables of the caller's environment that would point a sandbox command at another installation.
FOREIGN = ("ERPCTL_DATA_DIR", "ERPCTL_DATABASE_URL", "ERPCTL_BACKUP_REPO", "ERPCTL_BACKUP_KEY_FILE",
           "ERPCTL_BACKUP_PASSPHRASE", "ERPCTL_ERP_URL", "ERPCTL_ERP_PORT", "ERPCTL_OPS_PORT", "ERP_URL", "OPS_URL",
           "ERPCTL_PROMETHEUS_URL", "ERPCTL_ALERTMANAGER_URL", "ERPCTL_FAILPOINTS", "ERP_TOKEN", "ERP_FIELD_KEY",
           "ERPCTL_ESCROW_FILE", "ERPCTL_ESCROW_PASSPHRASE", "ERPCTL_ESCROW_PUBLIC_KEY", "ERPCTL_METRICS_TOKEN")


def free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) != 0


def scratch_db_name() -> str:
    return f"erpctl_drill_{uuid.uuid4().hex[:12]}"


def _admin(admin_url: str):
    return create_engine(ops.normalise_url(admin_url), isolation_level="AUTOCOMMIT")


def drop_database(admin_url: str, name: str) -> None:
    eng = _admin(admin_url)
    try:
        with eng.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        eng.dispose()


def database_exists(admin_url: str, name: str) -> bool:
    eng = _admin(admin_url)
    try:
        with eng.connect() as c:
            return c.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).first() is not None
    finally:
        eng.dispose()


@dataclass
class Sandbox:
    root: Path                       # drills/<id>/sandbox
    backend: str
    admin_url: str | None = None     # PostgreSQL: where the scratch database is created
    erp_port: int = 0
    ops_port: int = 0
    database: str | None = None
    proc: subprocess.Popen | None = None
    password: str = field(default_factory=lambda: uuid.uuid4().hex)
    left_over: list = field(default_factory=list)
    release: str | None = None       # the release the sandbox serves (None: the erp_core bundled with erpctl)
    # the escrow passphrase of the sandbox's field key (its escrow copy is made at set-up, as at an install)
    escrow_passphrase: str = field(default_factory=lambda: uuid.uuid4().hex)
    # the sandbox's metrics token: its /metrics (both ports) require it, as a monitored installation's do
    metrics_token: str = field(default_factory=lambda: uuid.uuid4().hex)

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def key_file(self) -> Path:
        return self.root / "backup.key"

    @property
    def erp_url(self) -> str:
        return f"http://127.0.0.1:{self.erp_port}"

    @property
    def database_url(self) -> str | None:
        if self.database is None:
            return None
        return make_url(self.admin_url).set(database=self.database).render_as_string(hide_password=False)

    def installation(self) -> Installation:
        return Installation.open(self.data_dir, self.database_url, environ={})

    # ------------------------------------------------------------------------------ commands

    def own_env(self) -> dict:
        """What the sandbox's erpctl commands get beyond its data directory and database."""
        return {"ERPCTL_BACKUP_KEY_FILE": str(self.key_file), "ERPCTL_ESCROW_PASSPHRASE": self.escrow_passphrase,
                "ERPCTL_METRICS_TOKEN": self.metrics_token,
                # the drill's workload logs in to the sandbox's ERP as its own admin, unattended: no second factor
                "ERPCTL_MFA_ROLES": "none"}

    def env(self, **extra) -> dict:
        out = {k: v for k, v in os.environ.items() if k not in FOREIGN}
        out.update({"ERPCTL_DATA_DIR": str(self.data_dir), **self.own_env()})
        if self.database_url:
            out["ERPCTL_DATABASE_URL"] = self.database_url
        out["PATH"] = os.pathsep.join([str(Path(erpctl_program()).parent), out.get("PATH", os.defpath)])
        out.update({k: v for k, v in extra.items() if v is not None})
        return out

    @property
    def workdir(self) -> Path:
        """Where its erpctl commands run."""
        return self.root

    def erpctl(self, *args, input: str | None = None, timeout: float = 300, program: str | None = None,
               **extra) -> subprocess.CompletedProcess:
        return subprocess.run([program or erpctl_program(), *map(str, args)], input=input, capture_output=True,
                              text=True, timeout=timeout, env=self.env(**extra), cwd=self.workdir,
                              stdin=None if input is not None else subprocess.DEVNULL)

    def popen(self, *args, **extra) -> subprocess.Popen:
        """An erpctl command left running (the drill signals it), in the sandbox like every other."""
        return subprocess.Popen([erpctl_program(), *map(str, args)], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=self.env(**extra),
                                cwd=self.root, start_new_session=True)

    def ok(self, *args, **kw) -> subprocess.CompletedProcess:
        r = self.erpctl(*args, **kw)
        if r.returncode != 0:
            raise DrillError(f"sandbox: erpctl {' '.join(map(str, args))} exited {r.returncode}: "
                             f"{(r.stderr or r.stdout).strip()[-600:]}",
                             fix="The drill's record and its sandbox log say more; run it again with --keep to look.")
        return r

    # ------------------------------------------------------------------------------ building

    def create(self, schedule: dict | None = None) -> None:
        """The directory, its erpctl.toml (the sandbox's backup key, the probes' and the scenario's schedules),
        the ports, and on PostgreSQL the scratch database."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.erp_port, self.ops_port = free_ports(2)
        schedule = "\n".join(f'"{k}" = "{v}"' for k, v in {**SCHEDULES, **(schedule or {})}.items())
        (self.data_dir / layout.name("config")).write_text(
            f'[backup]\nkey_file = "{self.key_file}"\n\n[schedule]\n{schedule}\n')
        if self.backend == "postgresql":
            if not self.admin_url:
                raise DrillError("no PostgreSQL server for the sandbox's scratch database",
                                 fix="Set drill.postgresql_url in erpctl.toml or ERPCTL_DRILL_POSTGRESQL_URL "
                                     "(e.g. postgresql://postgres@127.0.0.1:5432/postgres).")
            name = scratch_db_name()
            eng = _admin(self.admin_url)
            try:
                with eng.connect() as c:
                    c.execute(text(f'CREATE DATABASE "{name}"'))
            finally:
                eng.dispose()
            self.database = name

    def seed(self, scale: int) -> dict:
        """--fresh: a migrated database, seeded at `scale` (0: no demo data)."""
        self.migrate()
        if scale > 0:
            return json.loads(self.ok("--json", "erp", "seed", "--scale", scale, timeout=3600,
                                      program=self.own_erpctl).stdout)
        return {"scale": 0}

    def restore_from(self, source: Installation, environ: dict) -> dict:
        """The installation's newest backup restored into the sandbox (verified by the restore first)."""
        key = {"ERPCTL_BACKUP_REPO": source.get("backup_repo")}
        if source.get("backup_key_file"):
            key["ERPCTL_BACKUP_KEY_FILE"] = str(source.get("backup_key_file"))
        if environ.get("ERPCTL_BACKUP_PASSPHRASE"):
            key["ERPCTL_BACKUP_PASSPHRASE"] = environ["ERPCTL_BACKUP_PASSPHRASE"]
        listed = self.erpctl("--json", "backup", "list", **key)
        backups = (json.loads(listed.stdout or "{}") or {}).get("backups") if listed.returncode == 0 else None
        if not backups:
            raise NoBackupForDrill(f"no backup of the installation to restore the sandbox from "
                                   f"({key['ERPCTL_BACKUP_REPO']}: {(listed.stderr or 'empty').strip()[-300:]})",
                                   fix="Take one ('erpctl backup create'), or run the drill with --fresh to seed "
                                       "its sandbox from scratch.")
        newest = max(backups, key=lambda b: b["created_at"])
        field_key = layout.path(source.data_dir, "field_key")
        if field_key.exists():
            shutil.copy2(field_key, layout.path(self.data_dir, "field_key"))
        elif environ.get("ERP_FIELD_KEY"):  # the sandbox keeps its key in its own field.key (its escrow is its own)
            from .. import config
            config.write_private(layout.path(self.data_dir, "field_key"), environ["ERP_FIELD_KEY"].strip() + "\n")
        r = self.ok("backup", "restore", "--yes", newest["id"], timeout=3600, **key)
        return {"backup": newest["id"], "created_at": newest["created_at"], "output": r.stdout[-2000:]}

    # ------------------------------------------------------------------------------ releases

    @property
    def target(self):
        from ..config import Target
        return Target(self.data_dir, self.database_url or f"sqlite:///{layout.path(self.data_dir, 'database')}")

    @property
    def own_erpctl(self) -> str | None:
        """The erpctl of the release the sandbox serves, for what writes its schema's tables (the seed, the
        drill's user); None: this erpctl's."""
        return str(self.data_dir / "releases" / self.release / "env" / "bin" / "erpctl") if self.release else None

    def migrate(self) -> None:
        """The schema of the release the sandbox serves: its own migrations (`erpctl erp migrate` when it is
        the erp_core bundled with erpctl)."""
        if self.release is None:
            self.ok("erp", "migrate")
            return
        from .. import release
        release.migrate_with(self.target, release.get(self.target, self.release))

    def ensure_field_key(self) -> bool:
        """The sandbox's field key, created as the first `erpctl up` of an installation creates it (when the
        restore or the seed did not bring one); whether it was created."""
        import base64

        from .. import config
        path = layout.path(self.data_dir, "field_key")
        if path.exists():
            return False
        config.write_private(path, base64.urlsafe_b64encode(os.urandom(32)).decode() + "\n")
        return True

    def use_releases(self, source: Installation, to_version: str) -> dict:
        """The installation's releases, linked into the sandbox (read-only: each a whole environment), and the
        one it serves made the sandbox's current: the release an upgrade to `to_version` starts from."""
        from .. import release
        installed = {r.version: r for r in release.releases(source)}
        serving = release.current_version(source)
        older = sorted((v for v in installed if v != to_version), key=_version_key)
        start = serving if serving in installed and serving != to_version else (older[-1] if older else None)
        if start is None or to_version not in installed:
            raise DrillError(f"the installation has no release to upgrade from and to (installed: "
                             f"{', '.join(sorted(installed)) or 'none'}; the upgrade rehearsed is to {to_version}, "
                             "this erpctl's release): both must be installed ('erpctl release install WHEEL')",
                             fix=f"Install both with 'erpctl release install WHEEL': the release the installation "
                                 f"serves and {to_version}.")
        mine = release.releases_dir(self.target)
        mine.mkdir(parents=True, exist_ok=True)
        for version, rel in installed.items():
            os.symlink(rel.path, mine / version)
        release.set_current(self.target, start, check_schema=False, reason="drill sandbox")
        self.release = start
        return {"from": start, "to": to_version, "installed": sorted(installed)}

    def add_user(self) -> None:
        self.ok("erp", "user", "add", USER, "--role", "admin", "--password-stdin", input=self.password + "\n",
                program=self.own_erpctl)

    @property
    def login(self) -> dict:
        return {"username": USER, "password": self.password}

    # ------------------------------------------------------------------------------ serving

    def start(self) -> None:
        log = open(self.root / "up.log", "ab")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen([erpctl_program(), "up", "--erp-port", str(self.erp_port), "--ops-port",
                                      str(self.ops_port)], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                     env=self.env(), cwd=self.root, start_new_session=True)
        log.close()
        self.wait_ready()

    def ready(self) -> bool:
        try:
            return requests.get(self.erp_url + "/readyz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ready():
                return
            if self.proc is not None and self.proc.poll() is not None:
                raise DrillError(f"the sandbox's erpctl up exited {self.proc.returncode}: "
                                 f"{(self.root / 'up.log').read_text(errors='replace')[-800:]}",
                                 fix="Run the drill with --keep and read its sandbox's up.log.")
            time.sleep(0.2)
        raise DrillError(f"the sandbox's ERP was not ready within {timeout:.0f} s",
                         fix="Run the drill with --keep and read its sandbox's up.log.")

    def serving_pid(self) -> int | None:
        rec = self.installation().serving()
        return rec.pid if rec else None

    def pids(self) -> list[tuple[int, int | None]]:
        """(pid, start ticks) of every process of the sandbox that is known: erpctl up (the one started
        here and the one a runbook's `erpctl restart` started) and the ERP it serves."""
        out = []
        if self.proc is not None:
            out.append((self.proc.pid, None))
        try:
            inst = self.installation()
            rt, sv = inst.runtime(), inst.serving()
            if rt.pid:
                out.append((rt.pid, rt.pid_start))
            if sv and sv.pid:
                out.append((sv.pid, getattr(sv, "pid_start", None)))
        except Exception:  # noqa: BLE001 - clean-up goes on with what it knows
            pass
        return out

    # ------------------------------------------------------------------------------ clean-up

    def stop(self) -> None:
        """Every process of the sandbox ended: `erpctl stop`, then SIGKILL for what is left."""
        known = self.pids()
        for pid, _ in known:  # a stopped (SIGSTOP) process cannot end on SIGTERM; nor can its stopped workers
            _signal(pid, signal.SIGCONT)
            _signal_group(pid, signal.SIGCONT)
        if self.data_dir.exists():
            try:
                self.erpctl("stop", timeout=60)
            except (subprocess.TimeoutExpired, OSError):
                pass
        if self.proc is not None and self.proc.poll() is None:
            _signal_group(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        for pid, ticks in known:
            if procs.is_same(pid, ticks):
                _signal(pid, signal.SIGKILL)
                procs.wait_gone(pid, ticks, 10)
        for pid in standing_in(self.root):  # a command of a killed drill still running in the sandbox
            _signal(pid, signal.SIGCONT)
            _signal(pid, signal.SIGKILL)
            procs.wait_gone(pid, procs.start_ticks(pid), 10)

    def destroy(self, keep: bool = False) -> list[str]:
        """Stop, drop the scratch database, remove the directory (unless keep); what is left over."""
        left = []
        self.stop()
        left += [f"process {pid}" for pid in sorted({p for p, t in self.pids() if procs.is_same(p, t)}
                                                    | set(standing_in(self.root)))]
        left += [f"port {p}" for p in (self.erp_port, self.ops_port) if p and not _free_soon(p)]
        if self.database and not keep:
            drop_database(self.admin_url, self.database)
            if database_exists(self.admin_url, self.database):
                left.append(f"database {self.database}")
        if not keep:
            shutil.rmtree(self.root, ignore_errors=True)
            if self.root.exists():
                left.append(f"directory {self.root}")
        return left


def standing_in(root: Path) -> list[int]:
    """The processes whose working directory is in the sandbox (its erpctl up, its ERP, the commands the
    drill runs there all start in it); never this process."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        cwd = procs.cwd(int(entry.name))
        if cwd is not None and str(cwd).startswith(str(root)) and procs.state(int(entry.name)) != "Z":
            out.append(int(entry.name))
    return out


def _version_key(version: str) -> tuple:
    return tuple(int(p) if p.isdigit() else 0 for p in version.split("."))


def _free_soon(port: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not port_free(port):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
