"""Webhook signing and the guard against requests to internal addresses (SSRF)."""

import asyncio
import hashlib
import hmac
import ipaddress
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

SIGNATURE_HEADER = "X-Webhook-Signature"


class ForbiddenWebhookURLError(ValueError):
    """The URL is not http(s), or it resolves to an address the service must not call."""


def sign(body: bytes, secret: str) -> str:
    """The signature header value: sha256=<hex HMAC-SHA256 of the raw body>."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _is_internal(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return (
        ip.is_loopback
        or ip.is_private
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


def _host_and_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ForbiddenWebhookURLError("webhook_url must be an http or https URL")
    return parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)


def _check_addresses(host: str, addresses: Iterable[str]) -> None:
    internal = sorted({a for a in addresses if _is_internal(a)})
    if internal:
        raise ForbiddenWebhookURLError(
            f"webhook_url host {host!r} resolves to a loopback, private, link-local or "
            f"multicast address ({', '.join(internal)})"
        )


async def check_url(url: str) -> None:
    """Refuse URLs that resolve to internal addresses; for the API (non-blocking lookup)."""
    host, port = _host_and_port(url)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise ForbiddenWebhookURLError(f"webhook_url host {host!r} does not resolve") from exc
    _check_addresses(host, (str(info[4][0]) for info in infos))


def check_url_sync(url: str) -> None:
    """The same check at delivery time, in the worker: DNS may have changed since submit."""
    host, port = _host_and_port(url)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise ForbiddenWebhookURLError(f"webhook_url host {host!r} does not resolve") from exc
    _check_addresses(host, (str(info[4][0]) for info in infos))
