"""Run by a release's own Python (`<env>/bin/python -E -P inenv.py COMMAND`): asks that release's
erp_core, never the control plane's, about itself or about a database.

Uses only the standard library and erp_core interfaces that release 1.0 already has
(erp_core.db: code_head, known_migrations, script_directory, schema_status, migrate, Database;
erp_core.services.auth.add_user; erp_core.seed; erp_core.domain.permissions.ROLES;
erp_core.invariants.check_all). Input is one
JSON object on stdin (database URLs and keys never go on the command line); the answer is one
JSON object on stdout: {"ok": true, "result": ...} or {"ok": false, "error": ..., "detail": ..., "fix": ...}.

With launcher.py, exempt from the rule that the control plane imports only erp_core.ops and
erp_core.errors: it imports the release's own erp_core, and release 1.0 has no erp_core.ops.
tests/controlplane/test_import_graph.py checks that it keeps to the standard library and to
names release 1.0 has.
"""

import hashlib
import json
import os
import platform
import sys
import sysconfig
import time
import traceback


def own_site_packages_first() -> None:
    """The environment's own site-packages before anything else, so its erp_core is imported even
    when the control plane's copy (an editable install, a user site) is also on the path."""
    paths = sysconfig.get_paths()
    own = [p for p in dict.fromkeys((paths["purelib"], paths["platlib"])) if p]
    for p in own:
        while p in sys.path:
            sys.path.remove(p)
    sys.path[:0] = own


own_site_packages_first()


def _sha256(path) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def info(_payload) -> dict:
    import erp_core
    from erp_core import db

    pkg = os.path.dirname(os.path.abspath(erp_core.__file__))
    scripts = db.script_directory()
    migrations = []
    for m in db.known_migrations():
        path = scripts.get_revision(m["revision"]).path
        migrations.append({**m, "file": os.path.relpath(path, pkg), "sha256": _sha256(path)})
    return {"erp_core_file": os.path.abspath(erp_core.__file__), "erp_core_version": erp_core.__version__,
            "python": {"version": platform.python_version(), "executable": sys.executable, "prefix": sys.prefix},
            "schema_head": db.code_head(), "migrations": migrations}


def schema_status(payload) -> dict:
    from erp_core.db import make_engine
    from erp_core.db import schema_status as status

    engine = make_engine(payload["database_url"])
    try:
        return status(engine).as_dict()
    finally:
        engine.dispose()


def migrate(payload) -> dict:
    from erp_core.db import current_revision, make_engine
    from erp_core.db import migrate as upgrade

    engine = make_engine(payload["database_url"])
    try:
        before = current_revision(engine)
    finally:
        engine.dispose()
    return {"from_revision": before, "to_revision": upgrade(payload["database_url"], payload.get("revision", "head"))}


def demo(payload) -> dict:
    """One user per role sharing the demo password; a year of demo data if there are no sales orders."""
    from erp_core import crypto
    from erp_core import seed as erp_seed
    from erp_core.db import Database
    from erp_core.domain.permissions import ROLES
    from erp_core.errors import Conflict
    from erp_core.services import auth

    crypto.configure(payload["field_key"])
    db = Database(payload["database_url"])
    try:
        created, existing = [], []
        with db.session(actor="erpctl") as s:
            for role in ROLES:
                username = payload["username"] if role == "admin" else role
                try:
                    auth.add_user(s, username, payload["password"], role, full_name=f"Demo {role}")
                    created.append(username)
                except Conflict:
                    existing.append(username)
        seeded = None
        if not erp_seed.has_sales_orders(db):
            seeded = erp_seed.seed(db, int(payload.get("scale", 1)), single_transaction=True)
        return {"users_created": created, "users_existing": existing, "seeded": seeded}
    finally:
        db.dispose()


def invariants(payload) -> dict:
    """erp_core.invariants.check_all of this release: {"ok", "checks", "seconds", "violations"}."""
    from erp_core import crypto
    from erp_core import invariants as rules
    from erp_core.db import Database

    if payload.get("field_key"):
        crypto.configure(payload["field_key"])
    db = Database(payload["database_url"])
    try:
        with db.session(write=False, actor="erpctl") as s:
            t0 = time.perf_counter()
            found = rules.check_all(s)
            seconds = round(time.perf_counter() - t0, 3)
    finally:
        db.dispose()
    return {"ok": not found, "checks": [c.__name__ for c in getattr(rules, "CHECKS", ())], "seconds": seconds,
            "violations": [v.as_dict() for v in found]}


COMMANDS = {"info": info, "schema-status": schema_status, "migrate": migrate, "demo": demo,
            "invariants": invariants}


def main() -> int:
    if len(sys.argv) != 2 or sys.argv[1] not in COMMANDS:
        print(f"usage: inenv.py {{{'|'.join(COMMANDS)}}} < payload.json", file=sys.stderr)
        return 2
    try:
        payload = json.loads(sys.stdin.read() or "{}")
        result = COMMANDS[sys.argv[1]](payload)
    except Exception as exc:  # noqa: BLE001 - reported to the control plane, which raises a typed error
        traceback.print_exc()
        print(json.dumps({"ok": False, "error": exc.__class__.__name__, "detail": str(exc),
                          "fix": getattr(exc, "fix", None)}, default=str))
        return 1
    print(json.dumps({"ok": True, "result": result}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
