"""The faults a drill injects, against a real database: on PostgreSQL the corrupt-database fault (a DROP
TABLE ... CASCADE) goes through while the workload's transactions hold the tables it needs, even when
PostgreSQL picks it as a deadlock's victim."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from controlplane.drills.inject import Injector
from controlplane.drills.sandbox import Sandbox
from erp_core import ops
from tests.conftest import PG_ADMIN_URL, clone_pg_database


def _waiting_drop(engine, database: str) -> bool:
    with engine.connect() as c:
        return bool(c.execute(text("SELECT count(*) FROM pg_stat_activity WHERE datname = :d AND wait_event_type = "
                                   "'Lock' AND query LIKE 'DROP TABLE%'"), {"d": database}).scalar())


@pytest.mark.postgres
def test_the_pg_table_is_dropped_although_a_writer_deadlocks_with_the_drop(pg_template, request, tmp_path):
    url = clone_pg_database(pg_template, "erp_inject", request)
    database = make_url(url).database
    box = Sandbox(tmp_path / "sandbox", "postgresql", admin_url=PG_ADMIN_URL, database=database)
    engine = create_engine(ops.normalise_url(url))
    held, out = threading.Event(), {}

    def writer():
        """A workload transaction: holds journal_lines (as a posting does), then reads accounts, which the
        DROP holds while it waits for journal_lines (its foreign key): a deadlock."""
        with engine.connect() as c:
            c.execute(text("LOCK TABLE journal_lines IN ROW EXCLUSIVE MODE"))
            held.set()
            deadline = time.monotonic() + 30
            while not _waiting_drop(engine, database):
                assert time.monotonic() < deadline, "the DROP never waited for the writer"
                time.sleep(0.05)
            out["accounts"] = c.execute(text("SELECT count(*) FROM accounts")).scalar()
            time.sleep(0.5)
            c.commit()

    t = threading.Thread(target=writer)
    t.start()
    try:
        assert held.wait(30)
        detail = Injector(box).inject("corrupt-database", None, "accounts")
    finally:
        t.join(60)
    assert out["accounts"] > 0, "the writer's read went through (the DROP was the deadlock's victim)"
    assert detail["table"] == "accounts" and detail["attempts"] >= 2, detail
    with engine.connect() as c:
        assert c.execute(text("SELECT to_regclass('accounts')")).scalar() is None
    engine.dispose()
