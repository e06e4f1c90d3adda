"""Engines, sessions, migrations and the schema revision the code supports."""

from __future__ import annotations

import contextlib
import functools
import random
import sqlite3
import threading
import time
from pathlib import Path

from sqlalchemy import create_engine, event, func, inspect, select, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Query, Session, sessionmaker

from .errors import RetryLater
from .stored import (MIGRATIONS_DIR, STAGES, SchemaStatus, code_head, judge_schema,  # noqa: F401 - part of
                     known_migrations)                                                 # this module's interface
from .urls import default_sqlite_url, normalise_url  # noqa: F401 - part of this module's interface


def make_engine(url: str, **kw) -> Engine:
    url = normalise_url(url)
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        if u.database and u.database != ":memory:":
            Path(u.database).parent.mkdir(parents=True, exist_ok=True)
        kw.setdefault("pool_size", 20)
        kw.setdefault("max_overflow", 20)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **kw)
        _sqlite_setup(engine)
        return engine
    kw.setdefault("pool_size", 10)
    kw.setdefault("max_overflow", 30)
    kw.setdefault("pool_pre_ping", True)
    return create_engine(url, **kw)


def _sqlite_setup(engine: Engine) -> None:
    """WAL, foreign keys, a busy timeout, and BEGIN IMMEDIATE for write transactions so two
    writers queue on the lock instead of deadlocking on a read-to-write upgrade."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        write = conn.get_execution_options().get("erp_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


# ---- transactions that meet ------------------------------------------------------------------------

# SQLSTATEs of a transaction PostgreSQL aborted because it met another: serialization failure, deadlock,
# lock not available. On SQLite: "database is locked" (the busy timeout ran out).
TRANSIENT_SQLSTATES = frozenset({"40001", "40P01", "55P03"})
ATTEMPTS = 4


def is_transient(exc: BaseException) -> bool:
    """Whether a database error means "met another transaction, try again" rather than a fault."""
    orig = getattr(exc, "orig", exc)
    if (getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)) in TRANSIENT_SQLSTATES:
        return True
    return isinstance(orig, sqlite3.OperationalError) and "locked" in str(orig)


def retry_later(exc: BaseException) -> RetryLater:
    """The 409 a transient error becomes when it is not retried away."""
    kind = "a serialization failure" if getattr(getattr(exc, "orig", exc), "sqlstate", "") == "40001" else \
        "a lock conflict"
    return RetryLater(f"this change met another one on the same rows at the same moment ({kind}) and was "
                      "stopped; nothing was saved.", fix="Send the same request again; it is safe to repeat.",
                      headers={"Retry-After": "1"})


def retrying(work, attempts: int = ATTEMPTS):
    """Run a unit of work (a callable that opens and commits its own transaction) and return its result;
    when the database aborted it for meeting another transaction (is_transient) run it again, after a
    short random pause, up to `attempts` times in all; then RetryLater (409). The one retry loop of the
    ERP: the API and the web pages run every request through it."""
    for attempt in range(1, attempts + 1):
        try:
            return work()
        except DBAPIError as exc:
            if not is_transient(exc):
                raise
            if attempt == attempts:
                raise retry_later(exc) from None
            time.sleep(random.uniform(0, 0.01 * 2 ** attempt))
    raise AssertionError("unreachable")


class ErpQuery(Query):
    """Legacy Query whose count() of one entity counts its primary keys: the same number, without
    naming the columns a later release added (deferred in the models), so a process of this release
    can still count the documents of a database whose schema is not yet expanded."""

    def count(self) -> int:
        descriptions = self.column_descriptions
        entity = descriptions[0].get("entity") if len(descriptions) == 1 else None
        mapper = getattr(entity, "__mapper__", None)
        if mapper is None or descriptions[0].get("type") is not entity:
            return super().count()
        keys = self.with_entities(*mapper.primary_key).subquery()
        return self.session.scalar(select(func.count()).select_from(keys))


class Database:
    """An engine and its session factories (write sessions take the write lock up front on SQLite)."""

    def __init__(self, url: str, **kw):
        self.url = normalise_url(url)
        self.engine = make_engine(self.url, **kw)
        self._read = sessionmaker(self.engine, expire_on_commit=False, query_cls=ErpQuery)
        self._write = sessionmaker(self.engine.execution_options(erp_write=True), expire_on_commit=False,
                                   query_cls=ErpQuery)
        # SQLite has one writer at a time; queueing writers of this process on a lock wakes them in
        # turn instead of leaving them to the busy handler's sleep-and-retry (long tail latency).
        self._writer_queue = threading.Lock() if is_sqlite(self.engine) else contextlib.nullcontext()

    @contextlib.contextmanager
    def session(self, write: bool = True, actor: str = "system"):
        """A transaction: commits on success, rolls back on any error."""
        factory = self._write if write else self._read
        with (self._writer_queue if write else contextlib.nullcontext()), factory() as s:
            s.info["actor"] = actor
            try:
                yield s
                s.commit()
            except BaseException:
                s.rollback()
                raise

    def dispose(self):
        self.engine.dispose()


# ---- migrations -----------------------------------------------------------------------------

def alembic_config(url: str):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", normalise_url(url).replace("%", "%%"))
    return cfg


@functools.lru_cache(maxsize=1)
def script_directory():
    """The migrations this code ships (read once: they are code, /metrics and /readyz ask often)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(MIGRATIONS_DIR))


@functools.lru_cache(maxsize=None)
def migration_module(revision: str):
    """A migration script loaded as a module of its own, for a later migration that builds on its
    definitions (loading it through script_directory() from inside a migration would recurse)."""
    import importlib.util

    paths = sorted((MIGRATIONS_DIR / "versions").glob(f"{revision}_*.py"))
    if len(paths) != 1:
        raise LookupError(f"no single migration file for revision {revision}")
    spec = importlib.util.spec_from_file_location(f"erp_core_migration_{revision}", paths[0])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def migrate(url: str, revision: str = "head") -> str:
    from alembic import command

    command.upgrade(alembic_config(url), revision)
    engine = make_engine(url)
    try:
        return current_revision(engine)
    finally:
        engine.dispose()


def current_revision(bind: Engine | Connection) -> str | None:
    """The schema revision, None when never migrated; on a Connection, read in its transaction."""
    if not inspect(bind).has_table("alembic_version"):
        return None
    if isinstance(bind, Connection):
        return bind.execute(text("SELECT version_num FROM alembic_version")).scalar()
    with bind.connect() as c:
        return c.execute(text("SELECT version_num FROM alembic_version")).scalar()


def schema_status(engine: Engine) -> SchemaStatus:
    """Whether this code supports the database's schema (erp_core.stored.judge_schema says when)."""
    # here, not at the top: the ORM models cost ~110 ms of start-up (python -X importtime) that the
    # callers of engines, URLs and revisions (backup verify, the probes, upgrade lint) do not need
    from .models import SchemaMigration

    def applied():
        with Session(engine) as s:
            rows = s.execute(select(SchemaMigration).order_by(SchemaMigration.applied_at)).scalars().all()
        return [(r.revision, r.stage) for r in rows]

    return judge_schema(current_revision(engine), applied)
