"""controlplane.http, the one JSON-over-HTTP client, against the real ERP served by waitress."""

from __future__ import annotations

import socket
import time

import pytest

from controlplane import http
from erp_core.serve import Server
from tests.conftest import PASSWORD


@pytest.fixture
def served(sqlite_erp):
    server = Server(sqlite_erp.app, port=0).start()
    yield f"http://127.0.0.1:{server.port}"
    server.stop(timeout=2)


def test_json_answers_with_a_bearer_token(served):
    status, body = http.get(served + "/readyz")
    assert status == 200 and body["ready"] is True
    status, body = http.request("POST", served + "/api/v1/auth/login", {"username": "admin", "password": PASSWORD})
    assert status == 200 and body["token"]
    token = body["token"]
    status, page = http.get(served + "/api/v1/warehouses?limit=1", token=token)
    assert status == 200 and page["total"] == 0
    status, made = http.request("POST", served + "/api/v1/warehouses", {"code": "W9", "name": "Nine"}, token=token)
    assert status == 201 and made["code"] == "W9"


def test_error_answers_are_answers_and_read_as_problems(served):
    status, body = http.get(served + "/api/v1/warehouses")
    assert status == 401 and body["title"]
    assert http.describe(status, body).startswith("401 ") and body["detail"] in http.describe(status, body)
    status, body = http.request("POST", served + "/api/v1/auth/login", {"username": "admin", "password": "wrong"})
    assert status == 401 and "401" in http.describe(status, body)
    assert http.describe(502, None) == "502"


def test_nothing_listening_is_unreachable_naming_the_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/readyz"
    with pytest.raises(http.Unreachable, match=rf"GET {url}: .*refused") as caught:
        http.get(url, timeout=2)
    assert isinstance(caught.value, OSError)  # callers that waited on OSError keep working


def test_a_server_that_does_not_answer_times_out():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)  # accepts the connection, never answers
    try:
        t0 = time.monotonic()
        with pytest.raises(http.Unreachable, match="no answer within 0.5 s"):
            http.get(f"http://127.0.0.1:{listener.getsockname()[1]}/readyz", timeout=0.5)
        assert time.monotonic() - t0 < 5
    finally:
        listener.close()
