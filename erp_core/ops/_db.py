"""The database: URLs, engines, the schema revision and the migrations this code ships with their
stages (erp_core.db as it is: none of these loads the ORM models)."""

from __future__ import annotations

from ..db import (MIGRATIONS_DIR, STAGES, Database, SchemaStatus, alembic_config, code_head, current_revision,
                  known_migrations, make_engine, migrate, schema_status, script_directory)

__all__ = ["MIGRATIONS_DIR", "STAGES", "Database", "SchemaStatus", "alembic_config", "code_head",
           "current_revision", "known_migrations", "make_engine", "migrate", "schema_status",
           "script_directory"]
