"""JSON over HTTP: the control plane's one client for the ERP's API (probes, status, the upgrade,
the verification ladder's L4, a release's health checks).

    status, body = http.request("GET", url + "/readyz", timeout=5)
    status, body = http.request("POST", api + "/auth/login", {"username": u, "password": p})
    status, body = http.request("GET", api + "/reports/trial-balance", token=token)

Any answer is returned as (status, body): body is the parsed JSON, or None when the answer is
empty or not JSON. A status of 4xx/5xx is an answer too (the caller decides; `describe` words it).
When nothing answers (refused, timed out, unknown host), Unreachable is raised: an OSError whose
message names the method, the URL and the reason.
"""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request

DEFAULT_TIMEOUT = 5.0


class Unreachable(OSError):
    """Nothing answered at that URL (connection refused or reset, timeout, unknown host)."""


def request(method: str, url: str, body=None, *, token: str | None = None,
            timeout: float = DEFAULT_TIMEOUT) -> tuple[int, object]:
    """One request with a JSON body (when given) and an optional bearer token: (status, JSON or None)."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Accept": "application/json"})
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, (TimeoutError, socket.timeout)):
            reason = f"no answer within {timeout:g} s"
        raise Unreachable(f"{method} {url}: {reason}") from None
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, None


def get(url: str, *, token: str | None = None, timeout: float = DEFAULT_TIMEOUT) -> tuple[int, object]:
    return request("GET", url, token=token, timeout=timeout)


def describe(status: int, body) -> str:
    """An answer in a few words: `503 Service unavailable: the database did not answer` (problem+json)."""
    if isinstance(body, dict) and (body.get("title") or body.get("detail")):
        return f"{status} {body.get('title', '')}: {body.get('detail', '')}".strip()
    return str(status)
