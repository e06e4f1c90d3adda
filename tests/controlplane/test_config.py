"""controlplane.config: the Target a command acts on, read without SQLAlchemy where it can be."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from controlplane import config

URLS = ["sqlite:////srv/erpctl-data/erp.sqlite3", "sqlite:////tmp/my dir/erp-1.sqlite3", "sqlite:///relative.db",
        "sqlite:////tmp/50%25/erp.sqlite3", "sqlite:////tmp/a%40b/erp.sqlite3", "sqlite:///:memory:", "sqlite://",
        "sqlite:////tmp/erp.sqlite3?mode=ro", "postgresql+psycopg://erp:secret@db.example:5432/erp",
        "postgresql+psycopg:///erp?host=/run/postgresql", "postgresql+psycopg://db.example/erp?b=2&a=1"]


@pytest.mark.parametrize("url", URLS)
def test_a_target_reads_its_url_as_sqlalchemy_does(url):
    target, u = config.Target(Path("/srv/erpctl-data"), url), make_url(url)
    assert target.backend == u.get_backend_name()
    assert target.display_url == u.render_as_string(hide_password=True)
    expected = Path(u.database) if u.get_backend_name() == "sqlite" and u.database not in (None, "", ":memory:") \
        else None
    assert target.sqlite_path == expected


def test_resolving_the_data_directory_loads_no_sqlalchemy(tmp_path):
    """Every command resolves its target; most never open the database (erpctl settings shows it)."""
    code = ("import sys; from controlplane import config; t = config.resolve(sys.argv[1]); "
            "print(t.backend, t.sqlite_path, t.display_url); print('sqlalchemy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "data dir")], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    path = (tmp_path / "data dir").resolve() / "erp.sqlite3"
    assert out == [f"sqlite {path} sqlite:///{path}", "False"]
