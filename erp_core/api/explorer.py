"""An interactive explorer of the API at /api/v1/docs: Swagger UI over /api/v1/openapi.json, served from
the files the swagger-ui-bundle package ships (no CDN: it works offline and behind a firewall). The page
loads no inline script, so a strict Content-Security-Policy holds; a request is tried with a bearer token
typed into its Authorize dialog."""

from __future__ import annotations

from flask import Blueprint, Response, abort, send_from_directory

explorer = Blueprint("explorer", __name__)

ASSETS = ("swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js", "favicon-32x32.png")
PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>erp_core API explorer</title>
<link rel="stylesheet" href="/api/v1/docs/swagger-ui.css">
<link rel="icon" type="image/png" href="/api/v1/docs/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/api/v1/docs/swagger-ui-bundle.js"></script>
<script src="/api/v1/docs/explorer.js"></script>
</body>
</html>
"""
START = """window.ui = SwaggerUIBundle({url: "/api/v1/openapi.json", dom_id: "#swagger-ui", deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis], layout: "BaseLayout", persistAuthorization: false});
"""
CSP = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


def _asset_dir() -> str:
    import swagger_ui_bundle

    return swagger_ui_bundle.swagger_ui_path


def _headers(resp: Response) -> Response:
    resp.headers["Content-Security-Policy"] = CSP
    resp.headers["X-Content-Type-Options"] = "nosniff"
    return resp


@explorer.get("/api/v1/docs")
def docs_page():
    return _headers(Response(PAGE, mimetype="text/html"))


@explorer.get("/api/v1/docs/explorer.js")
def docs_start():
    return _headers(Response(START, mimetype="text/javascript"))


@explorer.get("/api/v1/docs/<name>")
def docs_asset(name: str):
    if name not in ASSETS:
        abort(404)
    resp = send_from_directory(_asset_dir(), name, max_age=86400)
    return _headers(resp)
