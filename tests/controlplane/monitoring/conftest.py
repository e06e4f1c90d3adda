"""Shared pieces of the monitoring tests: a real ERP served over HTTP (waitress) on a fresh
database, with the probe user `erpctl up` would create, and promtool."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from controlplane.config import Target
from controlplane.monitoring import credentials
from erp_core.serve import Server
from tests.conftest import Erp, fresh_database_url


@dataclass
class LiveErp:
    erp: Erp
    server: Server
    url: str
    target: Target

    @property
    def data_dir(self) -> Path:
        return self.target.data_dir


def start_live_erp(backend, request, tmp_path) -> LiveErp:
    url = fresh_database_url(backend, request, tmp_path)
    erp = Erp(url, backend)
    data = tmp_path / "data"
    data.mkdir(mode=0o700, exist_ok=True)
    credentials.ensure_probe_user(erp.db, data)
    server = Server(erp.app, port=0).start()
    live = LiveErp(erp, server, f"http://127.0.0.1:{server.port}", Target(data, url))
    request.addfinalizer(lambda: (server.stop(timeout=2), erp.close()))
    return live


@pytest.fixture
def live_erp(request, tmp_path) -> LiveErp:
    return start_live_erp("sqlite", request, tmp_path)
