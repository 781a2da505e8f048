"""The network policy of `live` (HTTP) tools: which addresses a tool request may reach.

By default only public unicast addresses are allowed. Refused, **before any connection**:
loopback, private (RFC 1918), shared (100.64/10), link-local (including 169.254.169.254),
unique-local (fc00::/7), multicast, unspecified, reserved and documentation ranges, and the
cloud metadata endpoints, also when wrapped in IPv6 (`::ffff:127.0.0.1`, 6to4, Teredo,
NAT64). `PARLEY_TOOL_ALLOWED_NETWORKS` (CIDRs) opens what an operator means to allow.

How it is enforced: `GuardedBackend` is the httpcore network backend of the tool HTTP pool,
so *every* TCP connection the pool opens — the first request and each redirect — passes
through `AddressGuard.resolve`: the host is parsed as an IP literal the way the C library
would (`2130706433`, `0x7f.1`, `0177.0.0.1`, `127.1` are all 127.0.0.1), or resolved by the
injected resolver; if any resulting address is refused the connection is never attempted,
and otherwise the pool connects to the checked address itself (no second lookup a DNS
rebinding could change).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import httpcore

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[list[str]]]

METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, ...
        "169.254.170.2",  # AWS ECS task metadata
        "100.100.100.200",  # Alibaba Cloud
        "192.0.0.192",  # Oracle Cloud
        "fd00:ec2::254",  # AWS IMDS over IPv6
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class AddressRefused(Exception):
    """The tool request would reach an address the policy refuses."""

    def __init__(self, host: str, address: str, reason: str) -> None:
        shown = host if host == address else f"{host} ({address})"
        super().__init__(f"refused to connect to {shown}: {reason}")
        self.host = host
        self.address = address
        self.reason = reason


class NetworkPolicy:
    def __init__(self, allowed: Iterable[str | IPNetwork] = ()) -> None:
        self.allowed: tuple[IPNetwork, ...] = tuple(
            n if not isinstance(n, str) else ipaddress.ip_network(n, strict=False) for n in allowed
        )

    def refusal(self, address: IPAddress) -> str | None:
        """Why `address` is refused, or None when a tool may connect to it."""
        candidates = _unwrap(address)
        if any(ip in net for ip in candidates for net in self.allowed):
            return None
        for ip in reversed(candidates):  # an embedded IPv4 address names the reason best
            reason = _private_reason(ip)
            if reason is not None:
                return reason
        return None


def _unwrap(address: IPAddress) -> list[IPAddress]:
    """The address and any IPv4 address embedded in it."""
    out: list[IPAddress] = [address]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            out.append(address.ipv4_mapped)
        if address.sixtofour is not None:
            out.append(address.sixtofour)
        if address.teredo is not None:
            out.extend(address.teredo)
        if address in _NAT64:
            out.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return out


def _private_reason(ip: IPAddress) -> str | None:
    if ip in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if isinstance(ip, ipaddress.IPv6Address) and ip in ipaddress.ip_network("fc00::/7"):
        return "a unique-local address"
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_private:
        return "a private address"
    if not ip.is_global:
        return "not a public address"
    return None


def parse_ip_literal(host: str) -> IPAddress | None:
    """`host` as an IP address if it is one in any spelling `inet_aton` accepts (decimal,
    octal, hex, 1-4 parts) or IPv6 (with or without brackets); None for a name."""
    text = host.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if text.endswith(".") and not text.endswith(".."):
        text = text[:-1]  # "127.0.0.1." is still 127.0.0.1 to a resolver
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    parts = text.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    values: list[int] = []
    for part in parts:
        try:
            if part.lower().startswith("0x"):
                values.append(int(part[2:] or "0", 16))
            elif len(part) > 1 and part.startswith("0"):
                values.append(int(part, 8))
            else:
                values.append(int(part, 10) if part.isdigit() else -1)
        except ValueError:
            return None
    if any(v < 0 for v in values):
        return None
    *head, last = values
    if any(v > 255 for v in head) or last >= 256 ** (4 - len(head)):
        return None
    number = 0
    for v in head:
        number = number * 256 + v
    number = number * 256 ** (4 - len(head)) + last
    return ipaddress.IPv4Address(number)


async def system_resolver(host: str, port: int) -> list[str]:
    """The addresses `host` resolves to (the C library's resolver, in a thread)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


class AddressGuard:
    def __init__(self, policy: NetworkPolicy, resolver: Resolver = system_resolver) -> None:
        self.policy = policy
        self._resolver = resolver

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        """The checked addresses to connect to; `AddressRefused` if any is refused (a name
        that resolves to one private address among public ones is refused whole)."""
        literal = parse_ip_literal(host)
        if literal is not None:
            addresses: list[IPAddress] = [literal]
        else:
            try:
                found = await self._resolver(host, port)
            except OSError as exc:
                raise AddressRefused(host, host, f"cannot resolve: {exc}") from None
            addresses = [ipaddress.ip_address(a.split("%", 1)[0]) for a in found]
            if not addresses:
                raise AddressRefused(host, host, "the name has no address")
        for address in addresses:
            reason = self.policy.refusal(address)
            if reason is not None:
                raise AddressRefused(host, str(address), reason)
        return addresses


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """An httpcore network backend that connects only to addresses the guard accepts."""

    def __init__(
        self, guard: AddressGuard, inner: httpcore.AsyncNetworkBackend | None = None
    ) -> None:
        self.guard = guard
        self.inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's signature
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await self.guard.resolve(host, port)
        error: Exception | None = None
        for address in addresses:
            try:
                return await self.inner.connect_tcp(
                    str(address), port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout, OSError) as exc:
                error = exc
        assert error is not None
        raise error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's signature
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise AddressRefused(path, path, "unix sockets are not allowed")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)
