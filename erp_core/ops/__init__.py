"""erp_core.ops: the ERP's operator interface — what any operator's tool may use.

Everything an operator needs from the ERP is here, and only here: the control plane (`erpctl`)
imports nothing else from erp_core but erp_core.errors. The rest of erp_core (models, services,
tables) may change between releases; these names keep their meaning. Names load on first use, so
importing this package costs nothing.

Version
    __version__                       the ERP release this code is
Maintenance mode (the read-only switch)
    maintenance_state(s) -> {"enabled", "reason", "retry_after", "until"}
    set_maintenance(s, enabled, reason="", retry_after=None, until=None)   refusals say Retry-After:
                                      seconds left until `until` (at least 1), else retry_after, else 60
    switch_maintenance(database_url, enabled=None, reason="", actor=..., retry_after=, until=)   its own
                                      transaction
Service users
    ROLES; create_user(s, username, password, role, full_name="", service=False) -> dict
                                      service=True: a tool's own user, which the API cannot change
    mark_service_user(s, username)    make an existing user a service user
    set_password(s, username, password)   rotate: active afterwards, its tokens revoked
    deactivate_user(s, username)    never the last active admin (Conflict)
    list_users(s) -> [{"id", "username", "role", "active", "service", "mfa", "last_login"}]
    reset_password(s, username, password=None) -> {"username", "temporary_password", "sessions_ended"}
                                      the user must change it at the next login
    logout_user(s, username) -> {"username", "sessions_ended"}   every session and token ends
    mfa_reset(s, username) -> {"id", "username", "reset"}   remove its multi-factor login (audit-logged)
Field encryption key
    with field_key(key): ...              set for the block, the previous key restored after
    load_field_key(key)                   for the rest of the process (a process serving the ERP)
    field_key_check(bind, key, sample=50) -> {"checked", "failed", "ok", "fields"}   does `key` decrypt
                                      the stored encrypted fields (nothing changed)
    rewrap_fields(url, key, batch=200) -> {"rewrapped", "passes"}   release 1.0's values re-encrypted
                                      bound to their row (refused, Conflict, before the contract step)
    reveal_audit_entry(url, key, entry_id, actor) -> {"entry", "values"}   an audit entry's encrypted
                                      values in clear; the reveal is audited
Invariants (the business checks)
    check_invariants(bind) -> InvariantsResult (ok, checks, seconds, violations; as_dict())
    invariant_checks() -> names
Repairs (derived data rebuilt from its record)
    repair_stock_cache(s, *, apply) -> {"corrections", "count", "digest", "applied"}   on-hand from the moves
Schema revision and migrations with their stages
    current_revision(engine_or_connection); sqlite_file_revision(sqlite3_connection)
    sqlite_maintenance(path) -> (SchemaStatus, {"enabled", "reason"} or None)   sqlite3 only, no SQLAlchemy
    parse_networks("10.0.0.5, 10.0.1.0/24") -> networks   the trusted proxies setting, checked (no Flask)
    schema_status(engine) -> SchemaStatus; code_head()
    known_migrations() -> [{"revision", "down_revision", "stage", "doc"}]; STAGES
    applied_migrations(bind) -> [{"revision", "stage", "applied_at"}]
    migrate(url, revision="head"); alembic_config(url); script_directory(); MIGRATIONS_DIR
    Database(url); make_engine(url); normalise_url(url); default_sqlite_url(data_dir)
Records
    writes_since(bind, audit_rows=N | at=T | not_in=copy, exclude_actors=(), exclude_entities=(),
                 exclude_actions=(), limit=200)
        -> {"count", "entries", "groups", "first_at", "last_at"}
    numbering_state(bind) -> {series: last number issued}
    numbering_floors(bind) -> {"engine", "series", "ids", "unreadable"}: what it handed out (numbers, ids,
                                      sequences); what a damaged table kept it from reading, named
    raise_numbering(url, floors) -> what was raised: every series and id at least the floors, never lower
    document_ids(s); sales_order_facts(s, ids); invoice_facts(s, ids); journal_totals(s)
Serving
    Settings; create_app(settings, db); Server(app, host, port); error_response(exc)
    TRANSLATIONS_DIR                  the pages' message catalogues (Chinese, English; the ops console's too)
Demo data and backfills
    seed(db, scale, rng_seed, progress=None); has_sales_orders(db)
    complete_period_balances(url) -> balances written, None if complete (ledger period balances)
    Backfill; BatchResult; backfills(revision); key_bounds; checkpoint; run_batch; remaining; rows_done

`bind` is a Session, a Connection (read in its transaction) or an Engine; `s` is a Session, e.g.
`with Database(url).session(actor="erpctl") as s`. Failures are erp_core.errors (ErpError: a
message, a fix, an exit code).
"""

from __future__ import annotations

import importlib

from .. import __version__

# name -> the module of this package that defines it (read on first use)
_WHERE = {
    **dict.fromkeys(["maintenance_state", "set_maintenance", "switch_maintenance"], "_maintenance"),
    **dict.fromkeys(["ROLES", "create_user", "set_password", "deactivate_user", "mark_service_user", "list_users",
                     "reset_password", "logout_user", "mfa_reset"], "_users"),
    **dict.fromkeys(["InvariantsResult", "check_invariants", "invariant_checks", "load_field_key", "field_key",
                     "field_key_check"],
                    "_checks"),
    **dict.fromkeys(["MIGRATIONS_DIR", "STAGES", "Database", "SchemaStatus", "alembic_config", "code_head",
                     "current_revision", "known_migrations", "make_engine", "migrate", "schema_status",
                     "script_directory"], "_db"),
    **dict.fromkeys(["default_sqlite_url", "normalise_url"], "_urls"),
    **dict.fromkeys(["applied_migrations"], "_schema"),
    **dict.fromkeys(["sqlite_file_revision", "sqlite_maintenance"], "_peek"),
    **dict.fromkeys(["parse_networks"], "_proxies"),
    **dict.fromkeys(["writes_since", "numbering_state", "document_ids", "sales_order_facts", "invoice_facts",
                     "journal_totals"], "_records"),
    **dict.fromkeys(["repair_stock_cache"], "_repairs"),
    **dict.fromkeys(["rewrap_fields", "reveal_audit_entry"], "_fields"),
    **dict.fromkeys(["numbering_floors", "raise_numbering"], "_numbering"),
    **dict.fromkeys(["Settings", "create_app", "error_response", "Server", "TRANSLATIONS_DIR"], "_serving"),
    **dict.fromkeys(["Backfill", "BatchResult", "backfills", "checkpoint", "key_bounds", "remaining", "rows_done",
                     "run_batch", "seed", "has_sales_orders", "complete_period_balances"], "_backfills"),
}

__all__ = ["__version__", *_WHERE]


def __getattr__(name: str):
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"erp_core.ops has no {name!r} (the operator interface is listed in its docstring)")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
