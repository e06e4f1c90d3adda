"""The ops console's web pages (under /console/), for operators and auditors.

Its own accounts (controlplane/console/users.py; not the ERP's): an operator reads every page and
starts backups, verifications, upgrade steps and drills (controlplane/console/jobs.py); an auditor
reads every page, sees no action and gets 403 on every action. A signed session cookie (HttpOnly,
SameSite=Strict) holds the account's name and a CSRF token that every POST must carry. Five failed
logins of a name or an address within five minutes hold further tries off until the window passes
(429). Pages are in English and Simplified Chinese: the account's choice, else the one picked on the
login page, else the browser's Accept-Language.
"""

from __future__ import annotations

import functools
import hmac
import re
import secrets
import threading
import time
from pathlib import PurePosixPath

from flask import (Blueprint, Flask, abort, current_app, flash, g, jsonify, redirect, render_template, request,
                   session, url_for)
from flask_babel import Babel, get_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from werkzeug.exceptions import HTTPException

from erp_core.errors import ErpError

from ..cli.backup_common import human_bytes
from ..installation import Installation
from . import jobs, users, views

bp = Blueprint("console", __name__, url_prefix="/console", template_folder="templates")
LOCALES = {"en": ("English", "en"), "zh_Hans": ("简体中文", "zh-CN")}
THROTTLE_FAILURES, THROTTLE_WINDOW = 5, 300.0
LIST_REFRESH = 5  # seconds: the runbook runs' and drills' pages while one runs (the upgrade's: 2)
DRILL_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,100}")
RUNBOOK_RE = re.compile(r"[A-Za-z0-9._-]{1,100}")
REFUSED = {
    "bad_verify": _l("Choose a backup (an id or 'latest') and a level from 1 to 4."),
    "bad_step": _l("Choose an upgrade step: apply, resume or rollback."),
    "confirm_step": _l("Type the step's name to confirm it."),
    "confirm_contract": _l("Type 'contract' to confirm the point of no return."),
    "bad_scenario": _l("Choose one of the drill scenarios listed."),
    "bad_action": _l("There is no such action."),
}
STATES = {"ok": _l("ok"), "warning": _l("needs attention"), "critical": _l("critical"), "none": _l("none"),
          "running": _l("running"), "rolling_back": _l("rolling back"), "done": _l("done"),
          "rolled_back": _l("rolled back"), "failed": _l("failed"), "interrupted": _l("interrupted"),
          "awaiting_contract": _l("awaiting contract"), "passed": _l("passed"), "aborted": _l("aborted"),
          "waiting-confirmation": _l("waiting for a confirmation"), "waiting-manual": _l("waiting for a manual step"),
          "recovered": _l("recovered"), "not-recovered": _l("not recovered")}


class Throttle:
    """Failed logins per name and per address within a window (in this process)."""

    def __init__(self):
        self.failures: dict[str, list[float]] = {}
        self.lock = threading.Lock()

    def _recent(self, key: str, now: float) -> list[float]:
        kept = [t for t in self.failures.get(key, []) if now - t < THROTTLE_WINDOW]
        self.failures[key] = kept
        return kept

    def retry_after(self, keys) -> int:
        now = time.monotonic()
        with self.lock:
            recent = [self._recent(k, now) for k in keys]
            waits = [THROTTLE_WINDOW - (now - r[0]) for r in recent if len(r) >= THROTTLE_FAILURES]
        return int(max(waits)) + 1 if waits else 0

    def failed(self, keys) -> None:
        now = time.monotonic()
        with self.lock:
            for k in keys:
                self._recent(k, now).append(now)


def _conf() -> dict:
    return current_app.config["CONSOLE"]


def _inst() -> Installation:
    c = _conf()
    return Installation.open(c["data_dir"], c["database_url"], strict=False)


def select_locale() -> str:
    user = g.get("console_user")
    if user and user.get("lang") in LOCALES:
        return user["lang"]
    if session.get("lang") in LOCALES:
        return session["lang"]
    best = request.accept_languages.best_match(["en", "zh"]) if request else None
    return "zh_Hans" if best == "zh" else "en"


def _lang() -> str:
    loc = get_locale()
    return "zh_Hans" if loc is not None and loc.language == "zh" else "en"


def setup(app: Flask, data_dir, database_url: str | None) -> None:
    """Serve the pages on `app` (the ops console's Flask app) for this installation."""
    from erp_core.ops import TRANSLATIONS_DIR

    app.secret_key = users.session_secret(data_dir)
    app.config.update(SESSION_COOKIE_NAME="erpctl_console", SESSION_COOKIE_HTTPONLY=True,
                      SESSION_COOKIE_SAMESITE="Strict", SESSION_COOKIE_PATH="/console",
                      CONSOLE={"data_dir": data_dir, "database_url": database_url, "throttle": Throttle()})
    Babel(app, locale_selector=select_locale, default_translation_directories=str(TRANSLATIONS_DIR))
    app.jinja_env.globals.update(LOCALES=LOCALES, STATES=STATES)
    app.jinja_env.filters["human_bytes"] = human_bytes
    app.jinja_env.filters["runbook_name"] = lambda url: PurePosixPath(str(url or "")).stem
    app.register_blueprint(bp)


@bp.before_request
def _who():
    session.setdefault("csrf", secrets.token_urlsafe(32))
    name = session.get("user")
    account = users.load(_conf()["data_dir"]).get(name) if name else None
    if account is None or account.get("role") not in users.ROLES:
        session.pop("user", None)
        g.console_user = None
    else:
        g.console_user = {"name": name, "role": account["role"], "lang": account.get("lang")}
    if request.method == "POST" and request.endpoint not in ("console.action",):
        _check_csrf()
    if g.console_user is None and request.endpoint not in ("console.login", "console.set_lang", "console.static"):
        return redirect(url_for("console.login", next=request.full_path if request.method == "GET" else None))
    return None


def _check_csrf():
    given = request.form.get("csrf", "")
    if not hmac.compare_digest(given.encode(), session.get("csrf", "").encode()):
        abort(400, _("The form expired or did not come from this console. Load the page again and retry."))


@bp.context_processor
def _context():
    return {"user": g.get("console_user"), "csrf": session.get("csrf"), "lang": _lang(),
            "html_lang": LOCALES[_lang()][1], "operator": (g.get("console_user") or {}).get("role") == "operator"}


@bp.after_request
def _headers(resp):
    resp.headers.setdefault("Content-Security-Policy", "default-src 'self'; style-src 'self' 'unsafe-inline'; "
                                                       "img-src 'self' data:; frame-ancestors 'none'")
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Cache-Control"] = "no-store"
    return resp


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException):
    code = exc.code or 500
    return render_template("console/error.html", code=code, detail=exc.description, fix=None), code


@bp.errorhandler(ErpError)
def _erp_error(exc: ErpError):
    code = getattr(exc, "status", 400) or 400
    return render_template("console/error.html", code=code, detail=str(getattr(exc, "detail", None) or exc),
                           fix=getattr(exc, "fix", None)), code


# ---- login, logout, language ---------------------------------------------------------------------

def _safe_next(target: str | None) -> str:
    if target and target.startswith("/console/") and not target.startswith("//") and "\\" not in target:
        return target
    return url_for("console.overview")


@bp.route("/login", methods=["GET", "POST"])
def login():
    if request.method == "GET":
        return render_template("console/login.html", name="", next=request.args.get("next", ""))
    name = request.form.get("name", "")[:100]
    keys = [f"name:{name.casefold()}", f"addr:{request.remote_addr}"]
    throttle = _conf()["throttle"]
    wait = throttle.retry_after(keys)
    if wait:
        flash(_("Too many failed logins. Try again in %(seconds)s seconds.", seconds=wait), "error")
        return render_template("console/login.html", name=name, next=request.form.get("next", "")), 429, \
            {"Retry-After": str(wait)}
    account = users.authenticate(_conf()["data_dir"], name, request.form.get("password", "")[:users.MAX_PASSWORD])
    if account is None:
        throttle.failed(keys)
        flash(_("Wrong name or password."), "error")
        return render_template("console/login.html", name=name, next=request.form.get("next", "")), 401
    lang = session.get("lang")
    session.clear()
    session.update(user=account["name"], csrf=secrets.token_urlsafe(32), lang=lang)
    return redirect(_safe_next(request.form.get("next")), 303)


@bp.post("/logout")
def logout():
    lang = session.get("lang")
    session.clear()
    session["lang"] = lang
    return redirect(url_for("console.login"), 303)


@bp.post("/lang")
def set_lang():
    lang = request.form.get("lang")
    if lang not in LOCALES:
        abort(400, _("Choose one of the languages offered."))
    session["lang"] = lang
    if g.console_user:
        users.set_lang(_conf()["data_dir"], g.console_user["name"], lang)
    return redirect(_safe_next(request.form.get("next")), 303)


# ---- pages ------------------------------------------------------------------------------------------

def page(template: str, **kw):
    return render_template(f"console/{template}", **kw)


@bp.get("/")
def overview():
    inst = _inst()
    return page("overview.html", r=views.overview(inst), jobs=jobs.listing(inst.data_dir, 10))


@bp.get("/runbooks/<name>")
def runbook(name):
    if not RUNBOOK_RE.fullmatch(name):
        abort(404)
    return page("runbook.html", rb=views.runbook(_inst(), name))


@bp.get("/backups")
def backups():
    return page("backups.html", r=views.backups(_inst()))


def _upgrade_data(inst) -> dict:
    r = views.upgrade(inst)
    r["job_running"] = jobs.running(inst.data_dir, "upgrade")
    r["refresh"] = r["running"] or r["job_running"]
    current = r["status"]
    shown = current if current["status"] != "none" else (current.get("last") or {"status": "none"})
    r["shown"] = shown
    return r


@bp.get("/upgrade")
def upgrade():
    r = _upgrade_data(_inst())
    return page("upgrade.html", r=r, refresh=r["refresh"])


@bp.get("/upgrade.json")
def upgrade_json():
    r = _upgrade_data(_inst())
    return jsonify({"status": r["status"], "job_running": r["job_running"], "refresh": r["refresh"]})


@bp.get("/runbook-runs")
def runbook_runs():
    runs = views.runbook_runs(_inst())
    return page("runs.html", runs=runs, refresh=LIST_REFRESH if any(r["status"] == "running" for r in runs) else None)


@bp.get("/drills")
def drills():
    inst = _inst()
    rows = views.drills(inst)
    busy = any(d.get("state") == "running" for d in rows) or jobs.running(inst.data_dir, "drill")
    return page("drills.html", drills=rows, scenarios=views.scenarios(inst), refresh=LIST_REFRESH if busy else None)


@bp.get("/drills/<drill_id>/report")
def drill_report(drill_id):
    lang = request.args.get("lang", "zh" if _lang() == "zh_Hans" else "en")
    if not DRILL_ID_RE.fullmatch(drill_id) or lang not in ("en", "zh"):
        abort(404)
    html, _about = views.drill_report(_inst(), drill_id, lang)
    return html, 200, {"Content-Type": "text/html; charset=utf-8",
                       "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
                                                  "frame-ancestors 'none'"}


@bp.get("/evidence")
def evidence():
    q = {k: request.args.get(k, "")[:views.MAX_QUERY] for k in ("kind", "q", "since", "until")}
    r = views.evidence(_inst(), q["kind"], q["q"], q["since"], q["until"])
    return page("evidence.html", r=r, q=q)


@bp.get("/jobs/<job_id>")
def job(job_id):
    found = jobs.get(_conf()["data_dir"], job_id)
    if found is None:
        abort(404)
    return page("job.html", job=found, refresh=found.get("exit_code") is None and jobs._alive(found.get("pid")))


# ---- actions (operators only) ---------------------------------------------------------------------

RETURN_TO = {"backup": "console.backups", "verify": "console.backups", "upgrade": "console.upgrade",
             "drill": "console.drills"}


def operator_only(fn):
    @functools.wraps(fn)
    def wrapper(*a, **kw):
        if (g.get("console_user") or {}).get("role") != "operator":
            abort(403, _("Only an operator may start this; an auditor's account reads only."))
        _check_csrf()
        return fn(*a, **kw)
    return wrapper


@bp.post("/actions/<action>")
@operator_only
def action(action):
    if action not in jobs.ACTIONS:
        abort(404)
    inst = _inst()
    try:
        args = jobs.command(action, request.form, views.scenarios(inst) if action == "drill" else [])
    except jobs.Refused as exc:
        flash(str(REFUSED[str(exc)]), "error")
        return redirect(url_for(RETURN_TO[action]), 303)
    started = jobs.start(inst, g.console_user["name"], action, args)
    flash(_("Started: %(command)s", command=started["command"]), "ok")
    if action == "upgrade":
        return redirect(url_for("console.upgrade"), 303)
    return redirect(url_for("console.job", job_id=started["id"]), 303)
