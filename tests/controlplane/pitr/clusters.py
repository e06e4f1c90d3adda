"""Real PostgreSQL clusters of the tests' own (initdb into a temporary directory, a free port): the
machine's server is never reconfigured. Run as the 'postgres' OS user when the tests run as root."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import psycopg

from controlplane.pitr import cluster
from tests.conftest import need
from tests.controlplane.cli_helpers import env as hermetic_env

BIN = Path("/usr/lib/postgresql/15/bin")


def os_user() -> str:
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid()).pw_name
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        need("no 'postgres' OS user to run test clusters as (PostgreSQL refuses root)")
    return "postgres"


def tools_or_skip() -> None:
    for tool in (BIN / "initdb", BIN / "pg_basebackup"):
        if not tool.exists():
            need(f"{tool} is missing (Debian: apt-get install postgresql-15)")
    if not shutil.which("pgbackrest"):
        need("pgbackrest is missing (Debian: apt-get install pgbackrest)")


def scratch_dir(prefix: str = "erpctl-pitr-") -> Path:
    """A directory the clusters' OS user can reach (pytest's tmp_path is root's alone)."""
    d = Path(tempfile.mkdtemp(prefix=prefix))
    d.chmod(0o755)
    return d


class Cluster:
    """One PostgreSQL cluster: its directory, port and Unix socket."""

    def __init__(self, base: Path, name: str):
        self.user = os_user()
        self.data = base / name
        self.socket = scratch_dir("erpctl-s-")
        cluster.chown_tree(self.socket, self.user)
        self.port = cluster.free_port()
        self.log = self.socket / "postgresql.log"  # where the cluster's OS user may write

    def initdb(self, **conf) -> Cluster:
        self.data.mkdir(mode=0o700)
        cluster.chown_tree(self.data, self.user)
        cluster.run([str(BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust", "--data-checksums",
                     "--no-sync"], self.user)
        self.configure(wal_level="replica", max_wal_senders=5, fsync="off", shared_buffers="16MB",
                       checkpoint_timeout="30min", **conf)
        return self

    def configure(self, **conf) -> None:
        with open(self.data / "postgresql.conf", "a") as f:
            f.writelines(f"{k} = '{v}'\n" for k, v in conf.items())

    def start(self) -> Cluster:
        cluster.start(str(BIN), self.data, self.user, port=self.port, socket_dir=str(self.socket), log=self.log,
                      timeout=120)
        return self

    def stop(self, mode: str = "fast") -> None:
        cluster.stop(str(BIN), self.data, self.user, mode=mode, timeout=60)

    def conninfo(self, dbname: str = "postgres") -> dict:
        return {"host": "127.0.0.1", "port": self.port, "user": "postgres", "dbname": dbname}

    def url(self, dbname: str = "erp") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def sql(self, query: str, dbname: str = "erp", params=None):
        with psycopg.connect(**self.conninfo(dbname), autocommit=True) as c:
            cur = c.execute(query, params)
            return cur.fetchall() if cur.description else None

    def standby(self, base: Path, name: str, app_name: str) -> Cluster:
        """A streaming standby of this cluster (pg_basebackup -R), started."""
        s = Cluster(base, name)
        s.data.mkdir(mode=0o700)
        cluster.chown_tree(s.data, s.user)
        cluster.run([str(BIN / "pg_basebackup"), "-D", str(s.data), "-h", "127.0.0.1", "-p", str(self.port), "-U",
                     "postgres", "-R", "-X", "stream", "-c", "fast", "--no-sync"], s.user, timeout=300)
        with open(s.data / "postgresql.auto.conf", "a") as f:
            f.write(f"primary_conninfo = 'host=127.0.0.1 port={self.port} user=postgres "
                    f"application_name={app_name}'\n")
        return s.start()

    def remove(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.socket, ignore_errors=True)


def erp_database(c: Cluster) -> str:
    """A migrated ERP database 'erp' with one user per role in the cluster; its URL."""
    from erp_core.db import migrate
    from tests.conftest import _seed_users

    c.sql("CREATE DATABASE erp", dbname="postgres")
    url = c.url("erp")
    migrate(url)
    _seed_users(url)
    return url


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:6]}"


def run_erpctl(*args: str, data_dir: Path, database_url: str, env: dict | None = None):
    """erpctl as a user runs it (its own process), --json."""
    import json
    import sys

    done = subprocess.run([sys.executable, "-m", "controlplane", "--json", *args, "--data-dir", str(data_dir),
                           "--database-url", database_url], capture_output=True, text=True, timeout=600, check=False,
                          env=hermetic_env(ERP_FIELD_KEY="test-field-key", **(env or {})))
    out = json.loads(done.stdout) if done.stdout.strip() else None
    err = next((json.loads(ln)["error"] for ln in reversed(done.stderr.splitlines())
                if ln.startswith('{"error"')), done.stderr)
    return done.returncode, out, err
