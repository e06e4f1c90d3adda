"""The fleet every test of this package shares: two real sshd and an installation that trusts them."""

from __future__ import annotations

import pytest

from ..cli_helpers import ok
from . import site
from .sshd import start_hosts, write_inventory


@pytest.fixture(scope="package")
def fleet(tmp_path_factory):
    """A data directory whose inventory names app1, app2 (app) and db1 (database) on two real sshd,
    their keys trusted through `erpctl fleet trust` with the fingerprints ssh-keygen prints."""
    tmp = tmp_path_factory.mktemp("fleet")
    servers, client = start_hosts(tmp, 2)
    data = tmp / "data"
    inv = write_inventory(data / "fleet" / "inventory.yml",
                          {"app1": ("app", servers[0]), "app2": ("app", servers[1]), "db1": ("database", servers[1])},
                          client, tmp / "roots")
    for name, server in (("app1", servers[0]), ("app2", servers[1])):
        ok("fleet", "trust", name, "--fingerprint", server.fingerprint, "--data-dir", data)
    yield {"data": data, "servers": servers, "client": client, "tmp": tmp, "inventory": inv}
    for s in servers:
        s.stop()


@pytest.fixture(scope="package")
def rollout(fleet, tmp_path_factory, request, pg_1_0_template):
    """The site of site.py: prepared once for the package; test_rolling_upgrade.py deploys and upgrades it."""
    yield from site.prepare(fleet, tmp_path_factory, request, pg_1_0_template)


@pytest.fixture
def deployed(rollout):
    """The site serving on both app hosts (deployed with site.yml when no earlier test did)."""
    if not site.serving(rollout):
        r = site.run_fleet(rollout, "deploy")
        assert r.returncode == 0, r.stdout[-6000:] + r.stderr
    return rollout
