"""The ERP application factory."""

from __future__ import annotations

import datetime as dt
import hmac
import logging
from decimal import Decimal

from flask import Flask, jsonify, request
from flask.json.provider import DefaultJSONProvider
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from sqlalchemy.exc import DataError, IntegrityError, OperationalError
from werkzeug.exceptions import HTTPException
from werkzeug.routing import IntegerConverter

from . import __version__, crypto, limits
from .api import explorer, framework, openapi
from .config import Settings
from .db import Database, is_transient, retry_later, schema_status
from .errors import ErpError, NotAuthenticated
from .metrics import instrument as instrument_app
from .metrics import record_exception
from .proxies import TrustedProxies
from .services import maintenance
from .web import pages

log = logging.getLogger("erp_core")


class JSON(DefaultJSONProvider):
    """Decimals as exact strings, dates in ISO 8601."""

    sort_keys = False

    @staticmethod
    def default(o):
        if isinstance(o, Decimal):
            return str(o)
        if isinstance(o, (dt.date, dt.datetime)):
            return o.isoformat()
        return DefaultJSONProvider.default(o)


def _problem_response(body: dict, headers=None):
    resp = jsonify(body)
    resp.status_code = body["status"]
    resp.mimetype = "application/problem+json"
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


def _problem(status: int, title: str, detail: str, fix: str | None = None, headers=None, **extra):
    return _problem_response({"type": f"https://erp-controlplane.dev/problems/{status}", "title": title,
                              "status": status, "detail": detail, **({"fix": fix} if fix else {}), **extra},
                             headers)


def bearer_matches(header: str, token: str) -> bool:
    """Whether an Authorization header carries `token` as its bearer token (compared in constant time)."""
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def error_response(exc: ErpError):
    """An ErpError as application/problem+json (the control plane's ops app answers the same way)."""
    return _problem_response(exc.to_problem(), exc.headers)


class BoundedInt(IntegerConverter):
    """<int:...> with at most 19 digits: Python refuses to read a number of more than 4300 digits
    (a ValueError inside routing, so a 500); a longer id matches no route and is a plain 404."""

    regex = r"\d{1,19}"


def _register_errors(app: Flask) -> None:
    app.register_error_handler(ErpError, error_response)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        # Keep the exception's own headers (Allow on a 405, Retry-After, WWW-Authenticate...).
        headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}
        return _problem(exc.code or 500, exc.name, exc.description or exc.name,
                        "See /api/v1/openapi.json for the routes and methods.", headers=headers)

    @app.errorhandler(IntegrityError)
    def _integrity(exc):
        log.warning("integrity error: %s", exc.orig)
        return _problem(409, "Conflict", "the change conflicts with data stored meanwhile (a uniqueness or "
                        "consistency rule)", "Reload the record and retry.")

    @app.errorhandler(DataError)
    def _data(exc):
        return _problem(422, "Invalid input", "a value does not fit its column", "Check lengths and number ranges.")

    @app.errorhandler(OperationalError)
    def _operational(exc):
        if is_transient(exc):
            return error_response(retry_later(exc))
        log.error("database unavailable: %s", exc.orig)
        return _problem(503, "Database unavailable", "the database did not answer in time",
                        "Retry shortly; if it persists, check the database (see runbooks).",
                        headers={"Retry-After": "5"})

    @app.errorhandler(Exception)
    def _unexpected(exc):
        log.exception("unexpected error")
        record_exception(app)
        return _problem(500, "Internal error", "an unexpected error occurred; it was logged",
                        "Retry; if it persists, report the time of the request.")


def _register_probes(app: Flask, db: Database, registry) -> None:
    @app.get("/healthz")
    def healthz():
        return {"status": "ok", "version": __version__}

    @app.get("/readyz")
    def readyz():
        checks = {}
        try:
            with db.engine.connect() as c:
                c.execute(text("SELECT 1"))
            checks["database"] = "ok"
            status = schema_status(db.engine)
            checks["schema"] = status.as_dict()
            with db.session(write=False) as s:
                mode = maintenance.state(s)
            checks["maintenance"] = mode
            ready = status.supported and not mode["enabled"]
        except OperationalError as exc:
            checks["database"] = f"unreachable: {exc.orig}"
            ready = False
        resp = jsonify({"ready": ready, "checks": checks})
        resp.status_code = 200 if ready else 503
        return resp

    if registry is not None:
        token = app.config["ERP_SETTINGS"].metrics_token

        @app.get("/metrics")
        def metrics():
            if token and not bearer_matches(request.headers.get("Authorization", ""), token):
                raise NotAuthenticated("/metrics needs the metrics token",
                                       fix="Send 'Authorization: Bearer <metrics token>' (Prometheus: an "
                                           "authorization block in the scrape config).")
            return generate_latest(registry), 200, {"Content-Type": CONTENT_TYPE_LATEST}


def create_app(settings: Settings, db: Database | None = None, instrument: bool = True) -> Flask:
    """The ERP app. instrument=False leaves out the metrics (no /metrics, no request or query
    timing): bench/metrics.py compares the two."""
    crypto.configure(settings.field_key)
    app = Flask(__name__)
    app.json = JSON(app)
    app.config["ERP_SETTINGS"] = settings
    app.config["TESTING"] = settings.testing
    db = db or Database(settings.database_url)
    app.extensions["erp_db"] = db
    app.url_map.converters["int"] = BoundedInt  # before any route is added
    limits.install(app)
    registry = instrument_app(app, db) if instrument else None
    app.register_blueprint(framework.api)
    spec = openapi.build()

    @app.get("/api/v1/openapi.json")
    def openapi_json():
        return jsonify(spec)

    app.register_blueprint(explorer.explorer)
    _register_errors(app)
    _register_probes(app, db, registry)
    app.register_blueprint(pages.web)
    if settings.trusted_proxies:
        app.wsgi_app = TrustedProxies(app.wsgi_app, settings.trusted_proxies)
    return app
