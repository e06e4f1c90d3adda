"""Request-body limits: every HTTP face refuses a body larger than its limit with 413 problem+json,
from its headers, without reading it."""

from __future__ import annotations

import json
import socket
import time

import psutil
import pytest

from erp_core import limits
from tests.controlplane.cli_helpers import free_ports
from tests.controlplane.test_up import up_factory  # noqa: F401 - fixture

BIG = 200 << 20  # 200 MB


@pytest.mark.parametrize("path, limit", [("/api/v1/auth/login", limits.LOGIN_BYTES),
                                         ("/app/login", limits.LOGIN_BYTES),
                                         ("/api/v1/partners", limits.DEFAULT_BYTES)])
def test_a_body_over_its_routes_limit_is_refused_with_a_problem(sqlite_erp, path, limit):
    r = sqlite_erp.client.post(path, data=b"x" * (limit + 1), content_type="application/json")
    assert r.status_code == 413
    if path.startswith("/api/"):
        assert r.mimetype == "application/problem+json" and str(limit) in r.json["detail"] and r.json["fix"]
    else:  # the web's own error page
        assert r.mimetype == "text/html" and f"at most {limit} bytes" in r.get_data(as_text=True)
    fits = sqlite_erp.client.post(path, data=b"{}" + b" " * (limit - 2), content_type="application/json")
    assert fits.status_code != 413


def test_imports_take_more_than_other_routes(sqlite_erp):
    body = b"{}" + b" " * (2 * limits.DEFAULT_BYTES)
    token = sqlite_erp.token("sales")
    r = sqlite_erp.client.post("/api/v1/imports/orders", data=body, content_type="application/json",
                               headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 422, r.get_data(as_text=True)  # read and judged, not refused for its size


def _tree_rss(pid: int) -> dict[int, int]:
    """The resident memory of each process of the tree: the supervisor and the servers it runs (and any
    short-lived helper it happens to be running, which the comparison below leaves out)."""
    proc = psutil.Process(pid)
    out = {}
    for p in [proc, *proc.children(recursive=True)]:
        try:
            out[p.pid] = p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return out


def _settled_rss(pid: int, samples: int = 4, gap: float = 0.3) -> dict[int, int]:
    """Each process's smallest resident memory over a second or so: a body read and kept stays, while a
    login's password check in progress (argon2 takes 64 MB for its moment, e.g. the business probe's)
    does not."""
    seen: list[dict[int, int]] = []
    for i in range(samples):
        if i:
            time.sleep(gap)
        seen.append(_tree_rss(pid))
    return {p: min(s[p] for s in seen if p in s) for p in set().union(*seen)}


def _growth(before: dict[int, int], after: dict[int, int]) -> int:
    """How much the processes that ran throughout grew."""
    return sum(after[pid] - before[pid] for pid in before.keys() & after.keys())


def _read_answer(sock: socket.socket) -> bytes:
    """The whole response: its head, then as many body bytes as its Content-Length says."""
    data = b""
    while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) < _length(data):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def _length(data: bytes) -> int:
    for line in data.partition(b"\r\n\r\n")[0].split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


def _send_huge(port: int, path: str) -> tuple[bytes, int]:
    """POST with a Content-Length of 200 MB, streaming the body: the answer, and how much was sent
    before the server closed the connection."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {BIG}\r\n\r\n".encode())
    chunk, sent = b"x" * (1 << 16), 0
    sock.sendall(chunk)
    sent += len(chunk)
    answer = _read_answer(sock)  # the server answers from the headers, without waiting for the body
    try:
        while sent < BIG:
            sock.sendall(chunk)
            sent += len(chunk)
    except OSError:  # the server closed the connection: it does not take the rest
        pass
    sock.close()
    return answer, sent


def test_a_200_mb_body_is_refused_without_being_read_by_the_real_servers(tmp_path, up_factory):  # noqa: F811
    erp_port, ops_port = free_ports(2)
    up = up_factory("up", "--data-dir", tmp_path / "data", "--erp-port", erp_port, "--ops-port", ops_port)
    up.wait_ready(f"http://127.0.0.1:{erp_port}/readyz")
    faces = [(erp_port, "/api/v1/auth/login"), (erp_port, "/api/v1/imports/orders"), (ops_port, "/alerts/webhook")]
    for port, path in faces:  # warm up (first requests load code and start worker threads)
        _send_huge(port, path)
    before = _settled_rss(up.proc.pid)
    for port, path in faces * 2:  # 6 x 200 MB announced: reading them would cost over a gigabyte
        t0 = time.monotonic()
        answer, sent = _send_huge(port, path)
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 413"), answer[:300]
        assert b"application/problem+json" in head
        assert "at most" in json.loads(body)["detail"]
        assert sent < BIG and time.monotonic() - t0 < 10
    grown = _growth(before, _settled_rss(up.proc.pid))
    assert grown < 32 << 20, f"the servers' memory grew by {grown >> 20} MB"
