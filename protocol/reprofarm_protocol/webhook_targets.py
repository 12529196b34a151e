"""Where a study's webhook may be sent: a submitter names the URL, the controller sends
the POST from inside the farm's network, so an unchecked URL would let a submitter reach
what only the controller can (a metadata service at 169.254.169.254, the database's
admin port, the api itself on 127.0.0.1: server-side request forgery).

The rule: a host an admin listed in ``REPROFARM_WEBHOOK_HOSTS`` may be anything (a
receiver on the lab's own network); any other host must resolve only to public
addresses. The api checks the URL at submit (a literal private address, or a host not
listed when the list is the only way out), and the worker checks every address the host
resolves to just before it sends, then connects to the address it checked: a name that
resolved to a public address at submit and to a private one later (DNS rebinding) is
refused, not followed."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Collection
from dataclasses import dataclass

Resolve = Callable[[str, int], list[str]]


class ForbiddenTarget(ValueError):  # noqa: N818 - reads as the verdict it is
    """The webhook's host is not one the controller may send to; the message says why."""


def _is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def resolve_all(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (a name can have several: each must be allowed)."""
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except OSError as exc:
        raise ForbiddenTarget(f"{host} does not resolve: {exc}") from exc
    return sorted({str(info[4][0]) for info in infos})


def check_host(host: str, *, allowed: Collection[str]) -> None:
    """At submit: a host an admin listed passes; a literal address must be public. A name
    is checked again when the webhook is sent (``address_to_send``)."""
    if host.lower() in {h.lower() for h in allowed}:
        return
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return  # a name: resolved and checked when it is sent
    if not _is_public(host.strip("[]")):
        raise ForbiddenTarget(
            f"{host} is not a public address; an admin may allow it with REPROFARM_WEBHOOK_HOSTS"
        )


@dataclass(frozen=True)
class Target:
    """The address to connect to, and the name the request and TLS must carry."""

    address: str | None  # None: the host was listed by an admin, connect as usual
    host: str


def address_to_send(
    host: str, port: int, *, allowed: Collection[str], resolve: Resolve = resolve_all
) -> Target:
    """Just before sending: the one address to connect to, after every address the host
    resolves to was found public. Raises ForbiddenTarget otherwise."""
    if host.lower() in {h.lower() for h in allowed}:
        return Target(address=None, host=host)
    addresses = resolve(host.strip("[]"), port)
    private = [a for a in addresses if not _is_public(a)]
    if private or not addresses:
        raise ForbiddenTarget(
            f"{host} resolves to {', '.join(private) or 'nothing'}, not a public address; "
            "an admin may allow it with REPROFARM_WEBHOOK_HOSTS"
        )
    return Target(address=addresses[0], host=host)
