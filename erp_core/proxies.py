"""The client's address behind the reverse proxies this ERP trusts (HAProxy, nginx).

Behind a load balancer every request comes from the balancer's address: login throttling, the login
history and the sessions list would all see one client. A proxy appends the address it received the
request from to X-Forwarded-For; this middleware reads that header from the right, hop by hop, only
while the hop it stands on is a trusted proxy, and takes the first address that is not one as the
client's (REMOTE_ADDR; the proxy's own address stays in environ["erp.proxy_addr"]). A request from an
address that is not trusted keeps its own address whatever X-Forwarded-For says, so a client cannot
choose its address by sending the header itself. No trusted proxy (the default): the header is ignored.
"""

from __future__ import annotations

import ipaddress
from typing import Iterable

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(raw: str | Iterable[str]) -> tuple[Network, ...]:
    """'10.0.0.5, 192.168.1.0/24' (or a list of them) -> networks; 'none' or empty -> (). ValueError names
    the entry that is not an address or network."""
    items = raw.split(",") if isinstance(raw, str) else list(raw)
    names = [str(i).strip() for i in items if str(i).strip()]
    if names in ([], ["none"]):
        return ()
    networks = []
    for name in names:
        try:
            networks.append(ipaddress.ip_network(name, strict=False))
        except ValueError:
            raise ValueError(f"trusted proxy {name!r} is not an IP address or network (e.g. 10.0.0.5 or "
                             f"10.0.0.0/24)") from None
    return tuple(networks)


def _address(text: str):
    try:
        return ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None


def client_address(peer: str, forwarded_for: str, trusted: tuple[Network, ...]) -> str:
    """The client's address: `peer` unless it is a trusted proxy, then the right-most address of
    `forwarded_for` that is not one (a malformed hop ends the walk at the last good one)."""
    def is_trusted(addr) -> bool:
        return addr is not None and any(addr in n for n in trusted)

    client = peer
    if not is_trusted(_address(peer)):
        return client
    for hop in reversed([h for h in forwarded_for.split(",") if h.strip()]):
        addr = _address(hop)
        if addr is None:
            break
        client = str(addr)
        if not is_trusted(addr):
            break
    return client


class TrustedProxies:
    """WSGI middleware setting REMOTE_ADDR to the client's address behind `trusted` proxies."""

    def __init__(self, app, trusted: tuple[Network, ...]):
        self.app, self.trusted = app, trusted

    def __call__(self, environ, start_response):
        peer = environ.get("REMOTE_ADDR", "")
        client = client_address(peer, environ.get("HTTP_X_FORWARDED_FOR", ""), self.trusted)
        if client != peer:
            environ["erp.proxy_addr"], environ["REMOTE_ADDR"] = peer, client
        return self.app(environ, start_response)
