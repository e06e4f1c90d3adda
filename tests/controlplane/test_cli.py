"""erpctl's ERP commands, run as the real console script: migrate, user add, seed, check, maintenance,
and the typed errors with their exit codes."""

from __future__ import annotations

import datetime as dt
import importlib
import json
import shutil
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, text

from tests.controlplane.cli_helpers import PASSWORD, PG_ADMIN_URL, erpctl, log_lines, need, ok, ok_json
from controlplane import __version__
from controlplane.cli import lazy
from controlplane.cli import main as main_module
from controlplane.errors import EXIT_CODES
from erp_core import __version__ as erp_version
from erp_core.app import create_app
from erp_core.config import Settings
from erp_core.db import STAGES, code_head, default_sqlite_url, known_migrations


def api(data_dir, key="unused-key"):
    """The ERP over the data directory's database, in this process (Flask test client)."""
    key_file = data_dir / "field.key"
    if key_file.exists():
        key = key_file.read_text().strip()
    app = create_app(Settings(default_sqlite_url(data_dir), field_key=key, testing=True))
    return app, app.test_client()


def login(client, username, password=PASSWORD):
    r = client.post("/api/v1/auth/login", json={"username": username, "password": password})
    assert r.status_code == 200, r.get_data(as_text=True)
    return {"Authorization": f"Bearer {r.json['token']}"}


def test_version():
    r = ok("--version")
    assert r.stdout.strip() == f"erpctl {__version__}"
    assert __version__ == erp_version
    assert ok_json("--version") == {"name": "erpctl", "version": __version__}


def test_help_lists_commands_and_exit_codes():
    out = ok("--help").stdout
    assert "up" in out and "erp" in out
    for code in EXIT_CODES:
        assert f"{code:>3}  " in out
    out = ok("erp", "--help").stdout
    for cmd in ("migrate", "user", "seed", "check", "maintenance"):
        assert cmd in out


# Imported only by the commands that use them: `erpctl --help` and `--version` start in a few tens of ms.
HEAVY = ("boto3", "botocore", "sqlalchemy", "flask", "werkzeug", "numpy", "zstandard", "cryptography", "apscheduler",
         "prometheus_client", "psutil", "rich", "alembic", "pydantic", "waitress", "argon2", "psycopg", "erp_core.db")
IMPORTED_BY = """
import json, sys
from controlplane.cli.main import main
try:
    main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
print(json.dumps({"exit": code, "modules": sorted(sys.modules)}), file=sys.stderr)
"""


def modules_imported_by(*args) -> tuple[int, set[str]]:
    """Run erpctl's main in a fresh interpreter; its exit code and every module it imported."""
    r = subprocess.run([sys.executable, "-c", IMPORTED_BY, *args], capture_output=True, text=True, timeout=60)
    out = json.loads(r.stderr.splitlines()[-1])
    return out["exit"], set(out["modules"])


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["--json", "--version"], ["backup", "--help"],
                                  ["upgrade", "--help"], ["erp", "--help"]])
def test_help_and_version_import_no_heavy_module(args):
    code, modules = modules_imported_by(*args)
    assert code == 0
    loaded = sorted(m for m in modules for h in HEAVY if m == h or m.startswith(h + "."))
    assert loaded == [], f"erpctl {' '.join(args)} imported {loaded[:10]}"
    commands = sorted(m for m in modules if m.startswith("controlplane.cli.") and
                      m not in ("controlplane.cli.main", "controlplane.cli.lazy", "controlplane.cli.options"))
    assert commands == [], f"erpctl {' '.join(args)} imported command modules {commands}"


def test_a_command_imports_its_own_module_only():
    code, modules = modules_imported_by("evidence", "verify", "--help")
    assert code == 0
    commands = {m for m in modules if m.startswith("controlplane.cli.") and m.split(".")[-1] not in
                ("main", "lazy", "options")}
    assert commands == {"controlplane.cli.evidence_verify"}


NOT_NEEDED = {  # command -> heavy modules it has no use for (it must not import them)
    # evidence verify checks signatures (cryptography); the backup code only with --anchors
    "evidence verify": {"flask", "boto3", "numpy", "zstandard", "apscheduler", "prometheus_client",
                        "psutil", "rich", "alembic", "pydantic", "sqlalchemy", "controlplane.backup"},
    "erp maintenance status": {"flask", "boto3", "numpy", "zstandard", "apscheduler", "prometheus_client", "psutil",
                               "rich", "alembic", "controlplane.release", "controlplane.backup", "sqlalchemy",
                               "erp_core.models", "cryptography", "pydantic"},
    "backup list": {"flask", "boto3", "apscheduler", "prometheus_client", "rich", "alembic", "pydantic",
                    "sqlalchemy", "numpy", "erp_core.models"},
    "backup create": {"flask", "boto3", "apscheduler", "prometheus_client", "rich", "alembic", "pydantic",
                      "sqlalchemy", "erp_core.models", "erp_core.invariants"},  # SQLite, no invariants asked
    "status": {"flask", "boto3", "numpy", "zstandard", "rich", "alembic", "sqlalchemy", "erp_core.models",
               "prometheus_client"},
    "settings": {"flask", "boto3", "numpy", "zstandard", "cryptography", "apscheduler", "prometheus_client",
                 "psutil", "rich", "alembic", "pydantic", "sqlalchemy"},
    "upgrade status": {"flask", "boto3", "numpy", "zstandard", "cryptography", "apscheduler", "prometheus_client",
                       "rich", "alembic", "pydantic", "sqlalchemy"},
    "release list": {"flask", "boto3", "numpy", "zstandard", "cryptography", "apscheduler", "prometheus_client",
                     "rich", "alembic", "pydantic", "sqlalchemy"},
}


def test_commands_import_only_the_heavy_modules_they_use(tmp_path, monkeypatch):
    data, repo = tmp_path / "data", f"file://{tmp_path / 'repo'}"
    ok("erp", "migrate", "--data-dir", data)
    ok("backup", "init", "--kdf-memory", "8192", "--repo", repo, "--data-dir", data, ERPCTL_BACKUP_PASSPHRASE="a passphrase")
    args = {"backup list": ["--repo", repo], "backup create": ["--repo", repo], "status": ["--erp-url", "http://127.0.0.1:9", "--timeout", "1"]}
    monkeypatch.setenv("ERPCTL_BACKUP_PASSPHRASE", "a passphrase")
    for command, unused in NOT_NEEDED.items():
        code, modules = modules_imported_by(*command.split(), "--data-dir", str(data), *args.get(command, []))
        assert code in (0, 17), command  # status: nothing serves on port 9 (critical)
        loaded = sorted(m for m in modules for u in unused if m == u or m.startswith(u + "."))
        assert loaded == [], f"erpctl {command} imported what it does not use: {loaded[:10]}"


def test_the_command_table_matches_the_commands():
    """--help lists main.COMMANDS without importing the commands: it must say what they say."""
    for group, rows in main_module.COMMANDS.items():
        parent = main_module.cli if not group else main_module.cli.commands[group]
        if group:
            assert parent.help == main_module.GROUPS[group]
        for name, (where, help_) in rows.items():
            command = lazy.load(where)
            assert command.name == name, f"{group} {name}: the table names {where}, which is {command.name!r}"
            assert command.get_short_help_str(10 ** 6) == help_, f"erpctl {group} {name}: update its help in main.py"
    # every command defined in controlplane/cli is in the table (a command left out could not be run)
    listed = {where for rows in main_module.COMMANDS.values() for where, _ in rows.values()}
    for path in sorted(Path(main_module.__file__).parent.glob("*.py")):
        module = importlib.import_module(f"controlplane.cli.{path.stem}")
        subcommands = {id(c) for v in vars(module).values() if isinstance(v, click.Group) for c in v.commands.values()}
        for attr, value in vars(module).items():
            if isinstance(value, click.Command) and value.callback is not None and \
                    value.callback.__module__ == module.__name__ and id(value) not in subcommands \
                    and path.stem != "main":
                assert f"{path.stem}:{attr}" in listed, f"controlplane.cli.{path.stem}.{attr} is not in main.COMMANDS"


def test_help_lists_as_click_would_with_every_command_loaded():
    lazy_help = {g: ok(*g.split(), "--help", COLUMNS="82").stdout for g in ("", "backup", "erp", "upgrade", "release", "evidence")}
    for group, rows in main_module.COMMANDS.items():  # the real commands, as an eager click group holds them
        parent = main_module.cli if not group else main_module.cli.commands[group]
        for name, (where, _) in rows.items():
            parent.add_command(lazy.load(where), name)
    runner = CliRunner()
    for group, text in lazy_help.items():
        eager = runner.invoke(main_module.cli, [*group.split(), "--help"], prog_name="erpctl",  # width 82 - 2
                              obj=main_module.Options(), terminal_width=80)
        assert eager.exit_code == 0
        rows = lambda out: out.split("Commands:")[1].split("Exit codes:")[0]  # noqa: E731
        assert rows(text) == rows(eager.output), group


def test_migrate_json_on_a_fresh_data_dir(tmp_path):
    data = tmp_path / "data"
    r = ok("--json", "erp", "migrate", "--data-dir", data)
    result = json.loads(r.stdout)
    assert result["from_revision"] is None
    assert result["to_revision"] == result["code_head"] == code_head()
    assert [m["revision"] for m in result["migrations"]] == [m["revision"] for m in known_migrations()]
    assert all(m["stage"] in STAGES and m["state"] == "applied now" for m in result["migrations"])
    assert (data / "erp.sqlite3").exists()
    logs = log_lines(r.stderr)  # stderr is not a terminal: structured logs
    assert any(rec["msg"] == "migrated the database" and rec["to_revision"] == code_head() for rec in logs)

    again = ok_json("erp", "migrate", "--data-dir", data)  # --json after the command works as well
    assert again["from_revision"] == again["to_revision"] == code_head()
    assert all(m["state"] == "already applied" for m in again["migrations"])

    human = ok("erp", "migrate", "--data-dir", data).stdout
    assert f"{code_head()} -> {code_head()}" in human and "expand" in human


def test_data_dir_from_the_environment(tmp_path):
    data = tmp_path / "env-data"
    ok("erp", "migrate", ERPCTL_DATA_DIR=str(data))
    assert (data / "erp.sqlite3").exists()


def test_user_add_then_login_through_the_api(tmp_path):
    data = tmp_path / "data"
    ok("erp", "migrate", "--data-dir", data)
    created = ok_json("erp", "user", "add", "bob", "--role", "sales", "--full-name", "Bob Seller",
                      "--password-stdin", "--data-dir", data, input=PASSWORD + "\n")
    assert created["username"] == "bob" and created["role"] == "sales" and created["id"] > 0
    assert PASSWORD not in json.dumps(created)

    _, client = api(data)
    me = client.get("/api/v1/me", headers=login(client, "bob")).json
    assert (me["username"], me["role"]) == ("bob", "sales")

    again = erpctl("erp", "user", "add", "bob", "--role", "sales", "--password-stdin", "--data-dir", data,
                   input=PASSWORD)
    assert again.returncode == 5  # Conflict
    assert "already exists" in again.stderr and "fix:" in again.stderr


def test_bad_role_is_a_clear_error(tmp_path):
    data = tmp_path / "data"
    ok("erp", "migrate", "--data-dir", data)
    r = erpctl("erp", "user", "add", "eve", "--role", "overlord", "--password-stdin", "--data-dir", data,
               input=PASSWORD)
    assert r.returncode == 2  # ValidationFailed
    assert "unknown role 'overlord'" in r.stderr
    assert "Use one of: admin, sales" in r.stderr
    assert r.stdout == ""

    r = erpctl("--json", "erp", "user", "add", "eve", "--role", "overlord", "--password-stdin",
               "--data-dir", data, input=PASSWORD)
    problem = json.loads(r.stderr.strip().splitlines()[-1])
    assert problem["exit_code"] == 2 and problem["error"]["field"] == "role"


def test_short_password_and_missing_password(tmp_path):
    data = tmp_path / "data"
    ok("erp", "migrate", "--data-dir", data)
    r = erpctl("erp", "user", "add", "eve", "--role", "sales", "--password-stdin", "--data-dir", data, input="short")
    assert r.returncode == 2 and "at least 12 characters" in r.stderr
    r = erpctl("erp", "user", "add", "eve", "--role", "sales", "--data-dir", data, input="")
    assert r.returncode == 2 and "--password-stdin" in r.stderr
    r = erpctl("erp", "user", "add", "eve", "--role", "sales", "--password-stdin", "--data-dir", data,
               input=f" {PASSWORD}\n")
    assert r.returncode == 2 and "whitespace" in r.stderr


def test_commands_refuse_a_missing_database(tmp_path):
    data = tmp_path / "nothing-here"
    for args in (("erp", "check"), ("erp", "seed"), ("erp", "maintenance", "status")):
        r = erpctl(*args, "--data-dir", data)
        assert r.returncode == 8, (args, r.stderr)
        assert "no ERP database" in r.stderr and "erpctl erp migrate" in r.stderr
    assert not (data / "erp.sqlite3").exists()


def test_unreachable_database_is_a_typed_error(tmp_path):
    r = erpctl("erp", "check", "--data-dir", tmp_path, "--database-url", "postgresql://nobody@127.0.0.1:9/none")
    assert r.returncode == 12
    assert "the database did not answer" in r.stderr and "fix:" in r.stderr


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    """A data directory with scale-1 demo data and an admin, shared by the tests below (read-only)."""
    data = tmp_path_factory.mktemp("seeded") / "data"
    ok("erp", "migrate", "--data-dir", data)
    ok("erp", "user", "add", "admin", "--role", "admin", "--password-stdin", "--data-dir", data, input=PASSWORD)
    result = ok_json("erp", "seed", "--scale", "1", "--data-dir", data)
    return data, result


def test_seed_creates_a_year_of_consistent_data(seeded):
    data, result = seeded
    created = result["created"]
    assert created["customers"] == 20 and created["suppliers"] == 5 and created["products"] == 50
    assert 2 <= created["warehouses"] <= 3
    assert created["sales_orders"] > 50 and created["invoices"] > 50 and created["payments"] > 50
    assert created["stocktakes"] >= 1 and created["transfers"] >= 1 and created["price_lists"] >= 1
    assert oct((data / "field.key").stat().st_mode & 0o777) == "0o600"

    r = ok("erp", "check", "--data-dir", data)
    assert r.stdout.startswith("ok: no violations")
    report = ok_json("erp", "check", "--data-dir", data)
    assert report["ok"] is True and report["violations"] == [] and report["checks"]


def test_seeded_data_through_the_api(seeded):
    data, _ = seeded
    _, client = api(data)
    h = login(client, "admin")

    def get(path, **query):
        r = client.get("/api/v1" + path, headers=h, query_string=query)
        assert r.status_code == 200, r.get_data(as_text=True)
        return r.json

    customers = get("/partners", kind="customer", limit=200)
    assert customers["total"] == 20
    c = customers["items"][0]
    assert c["tax_id"].startswith("SI") and c["bank_account"] and c["phone"]  # decrypted with the data dir's key
    assert get("/partners", kind="supplier")["total"] == 5
    products = get("/products", limit=200)
    assert products["total"] == 50
    assert {"VAT13", "VAT9", "VAT6", "VAT0"} >= {p["tax_code"] for p in products["items"]}
    assert len({p["tax_code"] for p in products["items"]}) >= 3

    invoices = get("/invoices", kind="customer", limit=200)
    assert invoices["total"] > 50
    states = {i["state"] for i in invoices["items"]}
    assert "paid" in states and states & {"open", "partial"}
    assert get("/invoices", kind="supplier")["total"] > 0
    assert get("/sales-orders", state="paid")["total"] > 0
    assert get("/stock/low")["total"] > 0  # some products are below their reorder point

    dates = sorted(i["issue_date"] for i in invoices["items"])
    span = dt.date.fromisoformat(dates[-1]) - dt.date.fromisoformat(dates[0])
    assert span.days > 200  # a year of history, not one day

    tb = get("/reports/trial-balance")
    assert tb["totals"]["debit"] == tb["totals"]["credit"]


def test_check_lists_violations_and_fails(seeded, tmp_path):
    data = tmp_path / "broken"
    shutil.copytree(seeded[0], data)
    with sqlite3.connect(data / "erp.sqlite3") as c:  # corrupt the on-hand cache behind the ERP's back
        c.execute("UPDATE stock_levels SET quantity = quantity + 7 "
                  "WHERE rowid = (SELECT min(rowid) FROM stock_levels)")
    r = erpctl("erp", "check", "--data-dir", data)
    assert r.returncode == 13
    assert "[on_hand_matches_moves]" in r.stdout
    assert "invariant violation" in r.stderr and "fix:" in r.stderr

    r = erpctl("--json", "erp", "check", "--data-dir", data)
    assert r.returncode == 13
    report = json.loads(r.stdout)
    assert report["ok"] is False
    assert [v["check"] for v in report["violations"]] == ["on_hand_matches_moves"]


def test_maintenance_on_and_off(tmp_path):
    data = tmp_path / "data"
    ok("erp", "migrate", "--data-dir", data)
    assert ok_json("erp", "maintenance", "status", "--data-dir", data) == {"enabled": False, "reason": ""}
    on = ok_json("erp", "maintenance", "on", "--reason", "upgrade to 1.1", "--data-dir", data)
    assert on == {"enabled": True, "reason": "upgrade to 1.1"}
    _, client = api(data)
    r = client.get("/readyz")
    assert r.status_code == 503 and r.json["checks"]["maintenance"]["enabled"] is True
    assert "read-only" in ok("erp", "maintenance", "status", "--data-dir", data).stdout
    assert ok_json("erp", "maintenance", "off", "--data-dir", data)["enabled"] is False
    assert client.get("/readyz").status_code == 200
    # refused writes tell clients when to retry: --retry-after seconds (60 without it)
    on = ok_json("erp", "maintenance", "on", "--retry-after", "7", "--data-dir", data)
    assert on == {"enabled": True, "reason": "", "retry_after": 7}
    assert "Retry-After: 7 s" in ok("erp", "maintenance", "status", "--data-dir", data).stdout
    r = erpctl("erp", "maintenance", "off", "--retry-after", "7", "--data-dir", data)
    assert r.returncode == 2 and "--retry-after" in r.stderr


def test_maintenance_switches_on_an_older_schema_and_refuses_an_unmigrated_one(tmp_path):
    """Mid-upgrade (or before 'erpctl erp migrate' on an older schema) the operator can still make the ERP
    read-only, as the upgrade engine does; a database never migrated has no switch."""
    from erp_core.db import migrate

    data = tmp_path / "data"
    older = ("--data-dir", data, "--database-url", f"sqlite:///{tmp_path / 'older.sqlite3'}")
    migrate(older[-1], "0002")
    assert ok_json("erp", "maintenance", "on", "--reason", "mid-upgrade", *older)["enabled"] is True
    assert ok_json("erp", "maintenance", "status", *older)["reason"] == "mid-upgrade"
    assert ok_json("erp", "maintenance", "off", *older)["enabled"] is False
    sqlite3.connect(tmp_path / "empty.sqlite3").close()
    r = erpctl("erp", "maintenance", "status", "--data-dir", data, "--database-url",
               f"sqlite:///{tmp_path / 'empty.sqlite3'}")
    assert r.returncode == 8 and "not migrated" in r.stderr


def test_migrate_refuses_a_database_ahead_with_contract_migrations(tmp_path):
    data = tmp_path / "data"
    ok("erp", "migrate", "--data-dir", data)
    _pretend_newer_contract_migration(data / "erp.sqlite3")
    r = erpctl("erp", "migrate", "--data-dir", data)
    assert r.returncode == 8
    assert "contract" in r.stderr and "fix:" in r.stderr


def _pretend_newer_contract_migration(path):
    """As if a newer erpctl had applied a contract migration this code does not know."""
    with sqlite3.connect(path) as c:
        c.execute("UPDATE alembic_version SET version_num = '9999_future'")
        c.execute("INSERT INTO erp_schema_migrations (revision, stage, applied_at) "
                  "VALUES ('9999_future', 'contract', '2030-01-01 00:00:00.000000')")


@pytest.mark.postgres
def test_migrate_seed_check_on_postgresql(tmp_path):
    try:
        admin = create_engine(PG_ADMIN_URL.replace("postgresql://", "postgresql+psycopg://"),
                              isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any failure to reach the server means "not available"
        need(f"PostgreSQL is not reachable at {PG_ADMIN_URL}: {exc}")
    name = f"erpctl_cli_{uuid.uuid4().hex[:8]}"
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    try:
        common = ("--data-dir", tmp_path / "data", "--database-url", url)
        migrated = ok_json("erp", "migrate", *common)
        assert migrated["from_revision"] is None and migrated["to_revision"] == code_head()
        assert "postgresql" in migrated["database"]
        ok("erp", "user", "add", "admin", "--role", "admin", "--password-stdin", *common, input=PASSWORD)
        seeded = ok_json("erp", "seed", *common, ERPCTL_DATABASE_URL="ignored-when-the-option-is-given")
        assert seeded["created"]["sales_orders"] > 50
        assert ok_json("erp", "check", *common)["ok"] is True
        # The URL may come from the environment too.
        assert ok_json("erp", "maintenance", "status", "--data-dir", tmp_path / "data",
                       ERPCTL_DATABASE_URL=url)["enabled"] is False
    finally:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
