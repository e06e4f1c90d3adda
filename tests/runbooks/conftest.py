"""The upgrade tests' session fixtures (both releases installed once, release 1.0's PostgreSQL database), for
the runbooks whose condition is an upgrade (tests/runbooks/conditions.py)."""

from tests.controlplane.upgrade.conftest import pg_1_0_template, release_store  # noqa: F401
