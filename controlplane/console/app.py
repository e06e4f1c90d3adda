"""The ops console's Flask app. Answers JSON; errors are problem+json like the ERP's.

    GET  /               what is served here
    GET  /healthz        the control plane answers
    GET  /metrics        the control plane's Prometheus metrics (controlplane.monitoring.exporter)
    POST /alerts/webhook Alertmanager's webhook (bearer token: alert-webhook.token in the data directory)
    GET  /alerts         firing alerts with their runbooks, and the recently resolved ones
    /console/...         web pages for operators and auditors, with their own login (controlplane/console/pages.py)
"""

from __future__ import annotations

import hmac

from flask import Flask, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from werkzeug.exceptions import HTTPException

from erp_core.errors import ErpError, NotAuthenticated, ValidationFailed
from erp_core.ops import error_response

from .. import __version__
from ..errors import DataDirProblem
from ..monitoring import alerts, credentials, exporter

COMPONENT = "controlplane"
MAX_WEBHOOK_BYTES = 4 << 20


def _problem(status: int, title: str, detail: str, fix: str | None = None):
    body = {"type": f"https://erp-controlplane.dev/problems/{status}", "title": title, "status": status,
            "detail": detail, **({"fix": fix} if fix else {})}
    resp = jsonify(body)
    resp.status_code = status
    resp.mimetype = "application/problem+json"
    return resp


def _require_bearer(expected: str | None, detail: str, fix: str) -> None:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if not expected or scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(),
                                                                             expected.encode()):
        raise NotAuthenticated(detail, fix=fix, headers={"WWW-Authenticate": 'Bearer realm="erpctl"'})


def create_app(links: dict | None = None, data_dir=None, job_ids=(), unrecorded=None,
               metrics_token: str | None = None, database_url: str | None = None) -> Flask:
    """`links`: where the parts of this installation answer (the ERP's URL, its API docs).
    `data_dir`: the installation's data directory (results, alerts, the webhook token).
    `job_ids`: the scheduled jobs (a list or a callable), for their metrics; `unrecorded`: the
    scheduler's runs whose results could not be written (Scheduler.unrecorded). `metrics_token`: when
    set, GET /metrics and GET /alerts answer only with 'Authorization: Bearer <token>'. With a data
    directory the web pages are served under /console/ (`database_url`: the installation's database)."""
    app = Flask("controlplane.console")
    app.json.sort_keys = False
    app.config["MAX_CONTENT_LENGTH"] = MAX_WEBHOOK_BYTES
    registry = exporter.registry(data_dir, job_ids, unrecorded=unrecorded)
    if data_dir is not None:
        from . import pages

        pages.setup(app, data_dir, database_url)

    def need_data_dir():
        if data_dir is None:
            raise DataDirProblem("this console has no data directory", fix="Serve it with 'erpctl up'.")

    @app.get("/")
    def index():
        return {"component": COMPONENT, "version": __version__,
                "links": {"healthz": "/healthz", "metrics": "/metrics", "alerts": "/alerts",
                          **({"console": "/console/"} if data_dir is not None else {}), **(links or {})}}

    @app.get("/healthz")
    def healthz():
        return {"status": "ok", "component": COMPONENT, "version": __version__}

    def need_metrics_token():
        if metrics_token:
            _require_bearer(metrics_token, f"{request.path} needs the metrics token",
                            "Send 'Authorization: Bearer <metrics token>' (Prometheus: an authorization block "
                            "with credentials_file in the scrape config; see monitors/prometheus.yml).")

    @app.get("/metrics")
    def metrics():
        need_metrics_token()
        return generate_latest(registry), 200, {"Content-Type": CONTENT_TYPE_LATEST}

    @app.post("/alerts/webhook")
    def alert_webhook():
        need_data_dir()
        _require_bearer(credentials.webhook_token(data_dir), "a valid bearer token is required to post alerts.",
                        f"Configure Alertmanager's webhook with http_config.authorization.credentials_file "
                        f"pointing at {credentials.WEBHOOK_TOKEN_FILE} in the data directory.")
        payload = request.get_json(silent=True)
        if payload is None:
            raise ValidationFailed("the body is not JSON", fix="Send Alertmanager's webhook JSON (version 4).")
        counts = alerts.record(data_dir, payload)
        return {"recorded": counts}

    @app.get("/alerts")
    def list_alerts():
        need_metrics_token()
        need_data_dir()
        return {"active": alerts.active(data_dir), "recently_resolved": alerts.recent_resolved(data_dir)}

    app.register_error_handler(ErpError, error_response)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        return _problem(exc.code or 500, exc.name, exc.description or exc.name, "GET / lists what is served here.")

    return app
