"""The address a request came from, as throttles may trust it.

Behind ``N`` reverse proxies (``VISREC["NUM_PROXIES"]``, else ``REST_FRAMEWORK["NUM_PROXIES"]``,
else 0) the client is the ``N``-th address from the right of ``X-Forwarded-For``: each proxy
appends the address it saw, so whatever stands left of that was written by the client and
proves nothing. With no proxy the header is ignored and ``REMOTE_ADDR`` is the client. An
IPv6 client is keyed by its /64 network (the block one customer gets), so rotating
addresses inside it gains nothing.
"""

from __future__ import annotations

import ipaddress

from rest_framework.settings import api_settings

from .conf import visrec_settings


def num_proxies() -> int:
    """How many trusted proxies append to ``X-Forwarded-For`` in front of this site."""
    value = visrec_settings.NUM_PROXIES
    if value is None:
        value = api_settings.NUM_PROXIES
    return max(int(value or 0), 0)


def client_address(request) -> str:
    """The client's address (an IPv4 address or an IPv6 /64 network) for throttling ``request``."""
    remote = request.META.get("REMOTE_ADDR") or ""
    address, proxies = remote, num_proxies()
    if proxies:
        hops = [hop.strip() for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop.strip()]
        if hops:
            address = hops[-min(proxies, len(hops))]
    return _network(address) or _network(remote) or remote or "unknown"


def _network(address: str) -> str | None:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    if ip.version == 6:
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)
