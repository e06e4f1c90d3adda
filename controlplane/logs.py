"""Logging for erpctl: one JSON object a line when stderr is not a terminal, readable text when it is.

ERPCTL_LOG_FORMAT=json|text overrides the choice. Fields passed with `extra=` become JSON keys.
Never pass secrets (passwords, keys, tokens) to a log call.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import sys

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def _extras(record: logging.LogRecord) -> dict:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in _extras(record).items():
            out.setdefault(key, value)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self):
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = _extras(record)
        if extras:
            line += " " + " ".join(f"{k}={v}" for k, v in extras.items())
        return line


def use_json(stream=None) -> bool:
    forced = os.environ.get("ERPCTL_LOG_FORMAT", "").lower()
    if forced in ("json", "text"):
        return forced == "json"
    stream = stream or sys.stderr
    return not (hasattr(stream, "isatty") and stream.isatty())


def setup(level: str = "info") -> None:
    """Send all logs to stderr in the chosen format (idempotent)."""
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_erpctl", False):
            root.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    handler._erpctl = True  # type: ignore[attr-defined]
    handler.setFormatter(JsonFormatter() if use_json(sys.stderr) else TextFormatter())
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Libraries that talk a lot at INFO: only their warnings, unless debugging.
    quiet = logging.DEBUG if level.lower() == "debug" else logging.WARNING
    for name in ("alembic", "waitress", "werkzeug"):
        logging.getLogger(name).setLevel(quiet)
    logging.captureWarnings(True)
