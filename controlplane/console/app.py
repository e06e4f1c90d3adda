"""The ops console's Flask app. Answers JSON; errors are problem+json like the ERP's."""

from __future__ import annotations

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

from erp_core.errors import ErpError

from .. import __version__

COMPONENT = "controlplane"


def _problem(status: int, title: str, detail: str, fix: str | None = None):
    body = {"type": f"https://erp-controlplane.dev/problems/{status}", "title": title, "status": status,
            "detail": detail, **({"fix": fix} if fix else {})}
    resp = jsonify(body)
    resp.status_code = status
    resp.mimetype = "application/problem+json"
    return resp


def create_app(links: dict | None = None) -> Flask:
    """`links`: where the parts of this installation answer (the ERP's URL, its API docs)."""
    app = Flask("controlplane.console")
    app.json.sort_keys = False

    @app.get("/")
    def index():
        return {"component": COMPONENT, "version": __version__,
                "links": {"healthz": "/healthz", **(links or {})}}

    @app.get("/healthz")
    def healthz():
        return {"status": "ok", "component": COMPONENT, "version": __version__}

    @app.errorhandler(ErpError)
    def _erp(exc: ErpError):
        resp = jsonify(exc.to_problem())
        resp.status_code = exc.status
        resp.mimetype = "application/problem+json"
        return resp

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        return _problem(exc.code or 500, exc.name, exc.description or exc.name, "GET / lists what is served here.")

    return app
