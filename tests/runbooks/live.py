"""A real installation for the runbook tests: `erpctl up` as a process of its own, with its own ports,
data directory and (on PostgreSQL) database, the shipped schedules (a recovery shows in `erpctl status`
at once: it runs again what failed), a backup repository, and an ERP user whose token the business
runbooks use."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import requests
from sqlalchemy import text

from controlplane.installation import Installation
from tests.conftest import _pg_admin, _pg_url, reachable_pg_admin
from tests.controlplane.cli_helpers import env as hermetic_env
from tests.controlplane.cli_helpers import erpctl_path, free_ports
from tests.controlplane.test_up import _until as until

READY_TIMEOUT = 60.0
USER, PASSWORD = "oncall", "correct horse battery"


class Live:
    """One installation; `start`, `baseline`, and always `close`."""

    def __init__(self, root: Path, backend: str, template: str | None = None):
        """template: on PostgreSQL, the database to copy (else a new, empty one)."""
        self.backend = backend
        self.root = root
        self.data_dir = root / "data"
        self.erp_port, self.ops_port = free_ports(2)
        self.erp_url = f"http://127.0.0.1:{self.erp_port}"
        self.ops_url = f"http://127.0.0.1:{self.ops_port}"
        self.key_file = root / "backup.key"
        self.database = None
        self.database_url = None
        if backend == "postgresql":
            reachable_pg_admin()
            self.database = f"erp_rb_{uuid.uuid4().hex[:10]}"
            self.pg_sql(f'CREATE DATABASE "{self.database}"' + (f' TEMPLATE "{template}"' if template else ""))
            self.database_url = _pg_url(self.database)
        self.proc: subprocess.Popen | None = None
        self._token: str | None = None
        self.user = False  # prepare() made the ERP user whose token the business runbooks use
        self.extra_env: dict[str, str] = {}
        self.process_env: dict[str, str] = {}  # for erpctl itself and the runbook engine (ERP_FIELD_KEY)
        self.pipeline = None  # real Prometheus and Alertmanager, for the runbooks that need them

    # ------------------------------------------------------------------ environment and commands

    def erpctl_env(self) -> dict[str, str]:
        extra = {**self.process_env, "ERPCTL_DATA_DIR": str(self.data_dir), "ERPCTL_BACKUP_KEY_FILE": str(self.key_file)}
        if self.database_url:
            extra["ERPCTL_DATABASE_URL"] = self.database_url
        return hermetic_env(**extra)

    def runbook_env(self) -> dict[str, str]:
        """The variables of runbooks/README.md's environment table, set to this installation's."""
        out = {**self.process_env, "ERPCTL_DATA_DIR": str(self.data_dir), "ERPCTL_DATABASE_URL": self.database_url,
               "ERPCTL_BACKUP_KEY_FILE": str(self.key_file)}
        if self.user:
            out["ERP_TOKEN"] = self.token()
        out.update(self.extra_env)
        return out

    def erpctl(self, *args, input: str | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
        return subprocess.run([erpctl_path(), *map(str, args)], input=input, capture_output=True, text=True,
                              timeout=timeout, env=self.erpctl_env(), stdin=None if input else subprocess.DEVNULL)

    def ok(self, *args, **kw) -> subprocess.CompletedProcess:
        r = self.erpctl(*args, **kw)
        assert r.returncode == 0, f"erpctl {' '.join(map(str, args))} -> {r.returncode}\n{r.stdout}\n{r.stderr}"
        return r

    def pg_sql(self, *statements: str) -> None:
        admin = _pg_admin()
        try:
            with admin.connect() as c:
                for s in statements:
                    c.execute(text(s))
        finally:
            admin.dispose()

    # ---------------------------------------------------------------------------- the processes

    def start(self) -> None:
        """`erpctl up` in a session of its own (as a supervisor would start it); returns once ready."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "erpctl.toml").write_text(f'[backup]\nkey_file = "{self.key_file}"\n')
        log = open(self.root / "up.log", "ab")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen([erpctl_path(), "up", "--data-dir", str(self.data_dir), "--erp-port",
                                      str(self.erp_port), "--ops-port", str(self.ops_port)],
                                     stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=self.erpctl_env(),
                                     start_new_session=True)
        log.close()
        self.wait_ready()

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        until(f"{self.erp_url}/readyz answers 200", lambda: requests.get(self.erp_url + "/readyz", timeout=3).ok,
              timeout)

    def prepare(self) -> None:
        """A backup repository (no backup yet) and an ERP user whose token the business runbooks use."""
        self.ok("backup", "init", "--key-file", self.key_file)
        self.ok("erp", "user", "add", USER, "--role", "admin", "--password-stdin", input=PASSWORD + "\n")
        self.user = True
        self.token()

    def status(self) -> tuple[int, dict]:
        r = self.erpctl("--json", "status")
        try:
            return r.returncode, json.loads(r.stdout)
        except ValueError:
            return r.returncode, {"stdout": r.stdout, "stderr": r.stderr}

    def healthy(self, timeout: float = 20.0) -> dict:
        """Wait until `erpctl status` exits 0; what it said last."""
        last: dict = {}

        def green():
            nonlocal last
            code, last = self.status()
            return code == 0

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if green():
                return {}
            time.sleep(0.5)
        return last.get("attention") or last

    def runtime(self):
        return Installation.open(self.data_dir, self.database_url, environ={}).runtime()

    def serving(self):
        return Installation.open(self.data_dir, self.database_url, environ={}).serving()

    def close(self) -> None:
        r = self.erpctl("stop", timeout=60)
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        if self.database:
            self.pg_sql(f'ALTER DATABASE "{self.database}" ALLOW_CONNECTIONS true',
                        f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
        assert r.returncode in (0, 51) or "not running" in r.stdout + r.stderr, r.stdout + r.stderr

    # ------------------------------------------------------------------------------ the ERP API

    def token(self) -> str:
        if self._token is None:
            r = requests.post(self.erp_url + "/api/v1/auth/login", json={"username": USER, "password": PASSWORD},
                              timeout=10)
            assert r.status_code == 200, r.text
            self._token = r.json()["token"]
        return self._token

    def api(self, method: str, path: str, json_body=None, expect: int = 200):
        r = requests.request(method, self.erp_url + "/api/v1" + path, json=json_body, timeout=20,
                             headers={"Authorization": f"Bearer {self.token()}"})
        assert r.status_code == expect, f"{method} {path}: {r.status_code} {r.text}"
        return r.json()
