"""A listen address (``host:port``) read from the configuration, and whether a host is this
machine's own (where plain `http://` is allowed)."""

from __future__ import annotations

import ipaddress
import re

_HOSTNAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9-]{1,63})*\.?$")


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_listen(value: str) -> tuple[str, int]:
    """``host:port``, ``[ipv6]:port`` or ``:port`` (every IPv4 address) → (host, port).

    Port 0 asks the kernel for any free port. Raises ValueError saying what is wrong.
    """
    text = value.strip()
    if not text:
        raise ValueError("empty listen address; expected host:port, e.g. 127.0.0.1:9464")
    host, separator, port_text = text.rpartition(":")
    if not separator:
        raise ValueError(f"{value!r} has no port; expected host:port, e.g. 127.0.0.1:9464")
    return _parse_host(host, value), _parse_port(port_text, value)


def _parse_host(host: str, value: str) -> str:
    if host == "":
        return "0.0.0.0"
    if host.startswith("[") or host.endswith("]"):
        if not (host.startswith("[") and host.endswith("]")):
            raise ValueError(f"{value!r}: unbalanced brackets around the IPv6 address")
        inner = host[1:-1]
        try:
            ipaddress.IPv6Address(inner)
        except ValueError:
            raise ValueError(f"{value!r}: {inner!r} is not an IPv6 address") from None
        return inner
    if ":" in host:
        raise ValueError(f"{value!r}: put an IPv6 address in brackets, e.g. [::1]:9464")
    if not _HOSTNAME.match(host):
        raise ValueError(f"{value!r}: {host!r} is not a valid host name or IPv4 address")
    return host


def _parse_port(port_text: str, value: str) -> int:
    if not port_text.isdigit() or not port_text.isascii():
        raise ValueError(f"{value!r}: the port must be a number from 0 to 65535")
    port = int(port_text)
    if port > 65535:
        raise ValueError(f"{value!r}: port {port} is out of range (0 to 65535)")
    return port
