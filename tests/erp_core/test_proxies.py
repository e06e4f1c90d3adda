"""The client's address behind a trusted load balancer: its X-Forwarded-For names the client for login
throttling and the login history; anyone else's X-Forwarded-For is ignored."""

from __future__ import annotations

import pytest

from erp_core.app import create_app
from erp_core.config import Settings
from erp_core.proxies import client_address, parse_networks
from tests.conftest import FIELD_KEY, PASSWORD

LB = parse_networks("10.0.0.5, 10.0.1.0/24")


@pytest.mark.parametrize("peer, header, client", [
    ("10.0.0.5", "203.0.113.7", "203.0.113.7"),                      # one proxy
    ("10.0.0.5", "203.0.113.7, 10.0.1.9", "203.0.113.7"),            # two trusted hops
    ("10.0.0.5", "198.51.100.1, 203.0.113.7", "203.0.113.7"),        # a client's own header: its left part ignored
    ("203.0.113.7", "198.51.100.1", "203.0.113.7"),                  # not a proxy: the header is ignored
    ("10.0.0.5", "", "10.0.0.5"),                                    # a proxy's own request
    ("10.0.0.5", "not-an-address, 203.0.113.7", "203.0.113.7"),
    ("10.0.0.5", "203.0.113.7, junk", "10.0.0.5"),                   # a malformed last hop: stop at the proxy
    ("10.0.0.5", "[2001:db8::1]", "2001:db8::1"),
])
def test_the_client_is_the_right_most_address_that_is_not_a_trusted_proxy(peer, header, client):
    assert client_address(peer, header, LB) == client


def test_networks_are_checked_and_none_trusts_nobody():
    assert parse_networks("none") == parse_networks("") == parse_networks([]) == ()
    with pytest.raises(ValueError, match="'10.0.0.300' is not an IP address or network"):
        parse_networks("10.0.0.5, 10.0.0.300")
    with pytest.raises(ValueError, match="trusted proxy"):
        Settings("sqlite://", field_key=FIELD_KEY, trusted_proxies="balancer.local")


def _login(client, password, forwarded_for, peer="10.0.0.5"):
    return client.post("/api/v1/auth/login", json={"username": "admin", "password": password},
                       headers={"X-Forwarded-For": forwarded_for}, environ_base={"REMOTE_ADDR": peer})


def test_behind_the_balancer_an_attackers_guesses_do_not_hold_back_the_real_user(sqlite_erp):
    """Every request comes from the balancer (10.0.0.5): throttling must still tell the clients apart."""
    app = create_app(Settings(sqlite_erp.url, field_key=FIELD_KEY, testing=True, trusted_proxies="10.0.0.5"),
                     sqlite_erp.db)
    client = app.test_client()
    statuses = [_login(client, f"guess {i} of the attacker", "203.0.113.7").status_code for i in range(8)]
    assert statuses[:5] == [401] * 5 and 429 in statuses
    r = _login(client, PASSWORD, "198.51.100.20")
    assert r.status_code == 200
    sessions = client.get("/api/v1/me/sessions", headers={"Authorization": f"Bearer {r.json['token']}"}).json
    assert [s["remote_addr"] for s in sessions["items"]] == ["198.51.100.20"]


def test_without_trust_a_forged_header_does_not_escape_the_throttle(sqlite_erp):
    client = sqlite_erp.client  # trusts no proxy: the default
    statuses = [_login(client, f"guess {i} again", f"198.51.100.{i}", peer="203.0.113.9").status_code
                for i in range(8)]
    assert statuses[:5] == [401] * 5 and 429 in statuses
