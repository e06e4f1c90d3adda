"""The release switch under load: a client that keeps asking the ERP (a new connection each time) while
a real upgrade switches `erpctl up` from release 1.0 to this tree's sees no refused connection and no
cut one: only answers, each within a few seconds."""

from __future__ import annotations

import http.client
import json
import threading
import time

import pytest

from .conftest import NEW, OLD
from .test_upgrade import Up


class Hammer:
    """GET /healthz in a loop, each on a new connection; every outcome with its start and end."""

    def __init__(self, port: int):
        self.port = port
        self.outcomes: list[tuple[float, float, str, str | None]] = []  # (start, end, outcome, version)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="hammer")

    def _once(self) -> tuple[str, str | None]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=15)
        try:
            conn.request("GET", "/healthz", headers={"Connection": "close"})
            r = conn.getresponse()
            body = r.read()
            if r.status == 503:
                return f"503 Retry-After {r.getheader('Retry-After')}", None
            return str(r.status), (json.loads(body or b"{}") or {}).get("version")
        except ConnectionRefusedError:
            return "refused", None
        except OSError as exc:
            return f"{type(exc).__name__}: {exc}", None
        except http.client.HTTPException as exc:
            return f"{type(exc).__name__}: {exc}", None
        finally:
            conn.close()

    def _run(self):
        while not self._stop.is_set():
            start = time.monotonic()
            outcome, version = self._once()
            self.outcomes.append((start, time.monotonic(), outcome, version))
            time.sleep(0.005)

    def __enter__(self) -> "Hammer":
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=30)

    def longest_unavailable(self) -> float:
        """The longest time between two answered requests (each waiting request counted from its start)."""
        answered = [end for _s, end, outcome, _v in self.outcomes if outcome == "200"]
        return max((b - a for a, b in zip(answered, answered[1:])), default=0.0)


@pytest.mark.parametrize("site", ["sqlite"], indirect=True)
def test_a_client_hammering_the_erp_during_a_release_switch_sees_no_refused_connection(site, tmp_path):
    up = Up(site, tmp_path)
    try:
        up.wait_version(OLD)
        with Hammer(up.erp_port) as hammer:
            time.sleep(0.5)
            r = site.ok_json("upgrade", "apply", "--erp-url", up.url, timeout=600)
            up.wait_version(NEW)
            time.sleep(0.5)
    finally:
        up.stop()
    assert r["status"] == "awaiting_contract", r
    outcomes = [o for _s, _e, o, _v in hammer.outcomes]
    bad = sorted({o for o in outcomes if o != "200" and not o.startswith("503 Retry-After")})
    versions = [v for *_, v in hammer.outcomes if v]
    longest = hammer.longest_unavailable()
    slowest = max(e - s for s, e, *_ in hammer.outcomes)
    print(f"\nrelease switch {OLD} -> {NEW} under a client: {len(outcomes)} requests, "
          f"{outcomes.count('refused')} refused, {len(bad)} other failures, longest unavailability "
          f"{longest:.3f} s, slowest request {slowest:.3f} s")
    assert bad == [], (bad, [o for o in outcomes if o in bad][:5])
    assert OLD in versions and versions[-1] == NEW  # the hammer saw the switch happen
    retry_afters = [int(o.rsplit(" ", 1)[1]) for o in outcomes if o.startswith("503")]
    assert all(1 <= s <= 5 for s in retry_afters), retry_afters
    assert longest < 5.0 and slowest < 5.0
