"""The kept 1.0 release and database are what they claim to be, and this code can still read them."""

import shutil
import zipfile
from pathlib import Path

from erp_core import crypto, invariants
from erp_core.db import MIGRATIONS_DIR, Database, schema_status
from erp_core.models import Invoice, SalesOrder

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
WHEEL = FIXTURES / "releases" / "erp_controlplane-1.0.0-py3-none-any.whl"


def test_the_1_0_wheel_is_release_1_0_and_its_migrations_are_unchanged_here():
    with zipfile.ZipFile(WHEEL) as z:
        metadata = z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))).decode()
        assert "\nVersion: 1.0.0\n" in metadata
        shipped = {n for n in z.namelist() if n.startswith("erp_core/migrations/versions/") and n.endswith(".py")}
        assert shipped == {"erp_core/migrations/versions/0001_initial.py"}
        for name in shipped:
            # a migration that has been released must never change: later releases only add new ones
            assert z.read(name) == (MIGRATIONS_DIR.parent.parent / name).read_bytes(), name


def test_the_1_0_database_is_consistent_at_revision_0001(tmp_path):
    copy = tmp_path / "erp.sqlite3"
    shutil.copy(FIXTURES / "erp-1.0.sqlite3", copy)
    crypto.configure("fixture-field-key")
    db = Database(f"sqlite:///{copy}")
    try:
        assert schema_status(db.engine).current == "0001"
        with db.session(write=False) as s:
            assert invariants.check_all(s) == []
            assert s.query(SalesOrder).count() == 163 and s.query(Invoice).count() == 200
    finally:
        db.dispose()
        from tests.conftest import FIELD_KEY
        crypto.configure(FIELD_KEY)
