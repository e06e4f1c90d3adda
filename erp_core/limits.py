"""How large a request body each HTTP face takes, and the refusal of a larger one before it is read.

Two layers. The WSGI server (waitress, serve.py) refuses a body larger than the largest limit as soon
as it has the request's headers: it never reads the body (a 200 MB POST costs nothing) and answers
413 problem+json. Below that, the app refuses a body larger than its route's limit from the
Content-Length header, before anything reads the body (Flask's MAX_CONTENT_LENGTH bounds what is read
of a body whose length is not known).
"""

from __future__ import annotations

import json

from flask import Flask, request

from .errors import ErpError

LOGIN_BYTES = 16 << 10       # a user name and a password (and a one-time code)
DEFAULT_BYTES = 1 << 20      # a document, a form, a batch of lines
IMPORT_BYTES = 8 << 20       # a batch of imported orders
MAX_BODY_BYTES = IMPORT_BYTES  # the server reads nothing larger
# The faces with a limit of their own, by path prefix (the first that matches).
LIMITS: tuple[tuple[str, int], ...] = (
    ("/api/v1/auth/", LOGIN_BYTES),
    ("/app/login", LOGIN_BYTES),
    ("/api/v1/imports/", IMPORT_BYTES),
)


class PayloadTooLarge(ErpError):
    status, exit_code, title = 413, 2, "Request body too large"


def limit_for(path: str) -> int:
    return next((limit for prefix, limit in LIMITS if path.startswith(prefix)), DEFAULT_BYTES)


def refusal(length: int | None, limit: int) -> PayloadTooLarge:
    said = f"{length} bytes" if length is not None else "a body"
    return PayloadTooLarge(f"the request sends {said}; this address takes at most {limit} bytes",
                           fix="Send less: split an import into smaller batches.", limit=limit)


def problem_json(length: int | None, limit: int) -> bytes:
    """The 413 body the server itself sends (the same problem+json the app would)."""
    return json.dumps(refusal(length, limit).to_problem()).encode()


def install(app: Flask) -> None:
    """Refuse a body larger than its route's limit from its Content-Length, before it is read."""
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES

    @app.before_request
    def _limit_body():
        limit = limit_for(request.path)
        request.max_content_length = limit  # what is read of a body without a Content-Length
        if request.content_length is not None and request.content_length > limit:
            raise refusal(request.content_length, limit)
