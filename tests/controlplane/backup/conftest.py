"""Shared fixtures of the backup tests: a seeded small ERP database (SQLite and PostgreSQL), and S3
through moto's standalone server over HTTP (the same boto3 code path as AWS).

    moto_s3            -> {"endpoint_url", "bucket", "url" (s3://bucket/repo), "port"}; env set for boto3
    moto_server        -> a session-wide MotoServer (start/stop/restart for fault tests)
    seeded_target      -> controlplane.config.Target on a seeded SQLite database in tmp_path/data
    pg_seeded_target   -> the same on a private seeded PostgreSQL database
    start_moto(port)   -> a MotoServer of one's own (the fault tests stop it mid-upload)
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text

from controlplane.config import Target
from erp_core import crypto
from erp_core.db import Database
from erp_core.seed import seed
from tests.conftest import FIELD_KEY, _pg_admin, _pg_url, clone_pg_database, need

S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
          "AWS_REGION": "us-east-1"}
# Variables that would point the tests at real AWS or another installation.
_CLEAR = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL", "ERPCTL_S3_ENDPOINT_URL",
          "ERPCTL_BACKUP_REPO", "ERPCTL_BACKUP_PASSPHRASE", "ERPCTL_BACKUP_KEY_FILE")
PASSPHRASE = "backup test passphrase"


def free_port() -> int:
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


class MotoServer:
    """moto's standalone S3 server as a subprocess on 127.0.0.1:<port>. It keeps its buckets in
    memory: a restart loses them (fault tests that stop it use an instance of their own)."""

    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None
        self.endpoint_url = f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20) -> MotoServer:
        exe = shutil.which("moto_server")
        cmd = [exe] if exe else [sys.executable, "-m", "moto.server"]
        self.proc = subprocess.Popen([*cmd, "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     env={**os.environ, **S3_ENV})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"moto_server exited with {self.proc.returncode}")
            try:
                urllib.request.urlopen(self.endpoint_url + "/moto-api/", timeout=1).close()
                return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"moto_server did not answer on port {self.port} within {timeout} s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def restart(self) -> MotoServer:
        self.stop()
        return self.start()

    def reset(self) -> None:
        """Forget every bucket (moto's own reset endpoint)."""
        req = urllib.request.Request(self.endpoint_url + "/moto-api/reset", method="POST")
        urllib.request.urlopen(req, timeout=5).close()

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint_url, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def make_bucket(self, name: str | None = None) -> str:
        name = name or f"erp-backups-{uuid.uuid4().hex[:8]}"
        self.client().create_bucket(Bucket=name)
        return name


def start_moto(port: int | None = None) -> MotoServer:
    try:
        import moto.server  # noqa: F401
    except ImportError:
        need("moto[server] is not installed: python -m pip install -e '.[test]'")
    try:
        return MotoServer(port).start()
    except (RuntimeError, OSError) as exc:
        need(f"moto's standalone server cannot start: {exc}")


def s3_env(endpoint_url: str) -> dict:
    return {**S3_ENV, "ERPCTL_S3_ENDPOINT_URL": endpoint_url}


@pytest.fixture(autouse=True)
def _hermetic_backup_env(monkeypatch):
    for name in _CLEAR:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def moto_server():
    server = start_moto()
    yield server
    server.stop()


@pytest.fixture
def moto_s3(moto_server, monkeypatch):
    """A fresh bucket on the session's moto server; the environment set so that boto3 (in this
    process and in erpctl subprocesses) reaches it."""
    bucket = moto_server.make_bucket()
    for k, v in s3_env(moto_server.endpoint_url).items():
        monkeypatch.setenv(k, v)
    yield {"endpoint_url": moto_server.endpoint_url, "bucket": bucket, "url": f"s3://{bucket}/repo",
           "port": moto_server.port, "server": moto_server}


# ---- seeded ERP databases ----------------------------------------------------------------------

def _write_field_key(data_dir: Path) -> None:
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = data_dir / "field.key"
    key.write_text(FIELD_KEY + "\n")
    key.chmod(0o600)


@pytest.fixture(scope="session")
def seeded_sqlite_template(sqlite_template, tmp_path_factory):
    path = tmp_path_factory.mktemp("seeded") / "erp.sqlite3"
    shutil.copy(sqlite_template, path)
    crypto.configure(FIELD_KEY)
    db = Database(f"sqlite:///{path}")
    seed(db, scale=1)
    with db.engine.connect() as c:  # one self-contained file: no -wal beside it
        c.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    db.dispose()
    return path


@pytest.fixture
def seeded_target(seeded_sqlite_template, tmp_path) -> Target:
    """A Target on a seeded (scale 1, ~0.7 MB) SQLite database in tmp_path/data, with its field key."""
    data_dir = tmp_path / "data"
    _write_field_key(data_dir)
    shutil.copy(seeded_sqlite_template, data_dir / "erp.sqlite3")
    return Target(data_dir.resolve(), f"sqlite:///{(data_dir / 'erp.sqlite3').resolve()}")


@pytest.fixture(scope="session")
def seeded_pg_template(pg_template):
    name = f"erp_seeded_{uuid.uuid4().hex[:8]}"
    admin = _pg_admin()
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"'))
    crypto.configure(FIELD_KEY)
    db = Database(_pg_url(name))
    seed(db, scale=1)
    db.dispose()
    yield name
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def pg_seeded_target(seeded_pg_template, tmp_path, request) -> Target:
    """A Target on a private seeded PostgreSQL database (dropped afterwards); data dir in tmp_path/data."""
    url = clone_pg_database(seeded_pg_template, "erp_b", request)
    data_dir = tmp_path / "data"
    _write_field_key(data_dir)
    from erp_core.db import normalise_url

    return Target(data_dir.resolve(), normalise_url(url))


@pytest.fixture
def passphrase(monkeypatch) -> str:
    """The repository passphrase, also in ERPCTL_BACKUP_PASSPHRASE for erpctl subprocesses."""
    monkeypatch.setenv("ERPCTL_BACKUP_PASSPHRASE", PASSPHRASE)
    return PASSPHRASE


# A cheap argon2id for tests (the parameters are stored in the repository, so any work).
FAST_KDF = {"memory_cost": 8192, "time_cost": 1, "parallelism": 1}


@pytest.fixture
def file_repo_url(tmp_path) -> str:
    return f"file://{tmp_path / 'repo'}"


def scatter_update(target: Target, fraction: float = 0.01, seed: int = 7) -> int:
    """Change `fraction` of the rows of the mutable document and master-data tables, picked at
    random (notes, addresses, names: the business invariants still hold). Returns rows changed."""
    import random

    rng = random.Random(seed)
    db = Database(target.database_url)
    changed = 0
    try:
        with db.engine.begin() as c:
            for table, column in (("sales_orders", "notes"), ("purchase_orders", "notes"),
                                  ("invoices", "supplier_reference"), ("partners", "address"), ("products", "name")):
                ids = [r[0] for r in c.execute(text(f'SELECT id FROM "{table}"'))]
                for i in rng.sample(ids, max(1, int(len(ids) * fraction))):
                    c.execute(text(f'UPDATE "{table}" SET "{column}" = :v WHERE id = :i'),
                              {"v": f"edited {rng.random():.6f}", "i": i})
                    changed += 1
    finally:
        db.dispose()
    return changed
