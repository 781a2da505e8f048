"""The SSRF guard of live tools: decisions, odd spellings, DNS, redirects — and not one
connection attempted where the policy refuses (a failing backend would fail the test)."""

from __future__ import annotations

import ipaddress

import pytest

from app.tools.ssrf import AddressGuard, AddressRefused, NetworkPolicy, parse_ip_literal
from tests.unit.tools.helpers import (
    LoopbackOnlyBackend,
    NoConnectBackend,
    checked,
    fixture_pack,
    registry,
    settings,
    table_resolver,
)
from tests.unit.tools.http_peer import http_peer

REFUSED = [
    "127.0.0.1",
    "127.8.9.10",
    "::1",
    "10.0.0.1",
    "172.16.0.1",
    "192.168.1.1",
    "169.254.169.254",
    "169.254.170.2",
    "100.100.100.200",
    "fd00:ec2::254",
    "fe80::1",
    "fd12:3456::1",
    "0.0.0.0",
    "::",
    "100.64.0.1",
    "224.0.0.1",
    "ff02::1",
    "192.0.2.1",
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.1",
    "2002:7f00:1::",
    "64:ff9b::a9fe:a9fe",
    "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo wrapping 127.0.0.1
]
ALLOWED = ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"]


@pytest.mark.parametrize("address", REFUSED)
def test_default_policy_refuses_non_public_addresses(address: str) -> None:
    assert NetworkPolicy().refusal(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize("address", ALLOWED)
def test_default_policy_allows_public_addresses(address: str) -> None:
    assert NetworkPolicy().refusal(ipaddress.ip_address(address)) is None


def test_metadata_and_loopback_reasons_are_named() -> None:
    policy = NetworkPolicy()
    assert policy.refusal(ipaddress.ip_address("169.254.169.254")) == "a cloud metadata address"
    assert policy.refusal(ipaddress.ip_address("127.0.0.1")) == "a loopback address"
    assert policy.refusal(ipaddress.ip_address("fd00::1")) == "a unique-local address"


def test_allowed_networks_open_only_what_they_name() -> None:
    policy = NetworkPolicy(["127.0.0.0/8", "fd00::/8"])
    assert policy.refusal(ipaddress.ip_address("127.0.0.1")) is None
    assert policy.refusal(ipaddress.ip_address("::ffff:127.0.0.1")) is None
    assert policy.refusal(ipaddress.ip_address("fd00::5")) is None
    assert policy.refusal(ipaddress.ip_address("10.0.0.1")) is not None
    assert policy.refusal(ipaddress.ip_address("::1")) is not None


@pytest.mark.parametrize(
    "spelling",
    [
        "2130706433",
        "0x7f000001",
        "0177.0.0.1",
        "0x7f.0.0.1",
        "127.1",
        "0x7f.1",
        "017700000001",
        "127.0.0.1.",
        "127.000.000.001",
        "[::1]",
        "[::ffff:7f00:1]",
    ],
)
def test_odd_spellings_of_loopback_parse_as_loopback(spelling: str) -> None:
    ip = parse_ip_literal(spelling)
    assert ip is not None
    assert NetworkPolicy().refusal(ip) == "a loopback address"


@pytest.mark.parametrize("name", ["example.com", "1.2.3.4.5", "256.1.1.1", "0x1g", "1..2", ""])
def test_names_and_invalid_literals_are_not_addresses(name: str) -> None:
    assert parse_ip_literal(name) is None


async def test_guard_refuses_literals_without_any_dns_lookup() -> None:
    resolver = table_resolver({})
    guard = AddressGuard(NetworkPolicy(), resolver)
    for host in ("2130706433", "0x7f000001", "10.0.0.1", "169.254.169.254", "::1"):
        with pytest.raises(AddressRefused):
            await guard.resolve(host, 80)
    assert resolver.calls == []


async def test_guard_refuses_a_name_resolving_to_loopback_and_mixed_answers() -> None:
    resolver = table_resolver(
        {
            "evil.test": ["127.0.0.1"],
            "mixed.test": ["8.8.8.8", "10.0.0.1"],
            "ok.test": ["93.184.216.34"],
        }
    )
    guard = AddressGuard(NetworkPolicy(), resolver)
    with pytest.raises(AddressRefused, match="loopback"):
        await guard.resolve("evil.test", 443)
    with pytest.raises(AddressRefused, match="private"):
        await guard.resolve("mixed.test", 443)
    assert [str(a) for a in await guard.resolve("ok.test", 443)] == ["93.184.216.34"]


def _weather_tool(url: str) -> dict[str, object]:
    return {"tools": {"get_weather": {"http": {"url": url, "method": "GET"}}}}


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "[::1]",
        "10.0.0.1",
        "169.254.169.254",
        "2130706433",
        "0x7f000001",
        "127.1",
        "evil.test",
        "metadata.test",
    ],
)
async def test_live_tool_calls_to_refused_hosts_never_connect(host: str) -> None:
    backend = NoConnectBackend()
    resolver = table_resolver({"evil.test": ["127.0.0.1"], "metadata.test": ["169.254.169.254"]})
    tools = registry(
        checked(_weather_tool(f"http://{host}/weather")), network_backend=backend, resolver=resolver
    )
    toolset = tools.toolset(fixture_pack("sdk__examples__tools__tools.pack.json"), "assistant")
    outcome = await toolset.execute("get_weather", {"city": "Paris", "country": "FR"})
    assert outcome.is_error and "refused to connect" in outcome.output
    assert backend.attempts == []
    await tools.aclose()


async def test_redirect_to_metadata_is_refused_before_connecting() -> None:
    backend = LoopbackOnlyBackend()
    async with http_peer() as peer:
        peer.handler = lambda r: (302, {"location": "http://169.254.169.254/latest/"}, b"")
        tools = registry(
            checked(_weather_tool(f"{peer.url}/weather")),
            settings=settings(tool_allowed_networks=["127.0.0.0/8"]),
            network_backend=backend,
        )
        toolset = tools.toolset(fixture_pack("sdk__examples__tools__tools.pack.json"), "assistant")
        outcome = await toolset.execute("get_weather", {"city": "Paris", "country": "FR"})
        await tools.aclose()
    assert outcome.is_error and "169.254.169.254" in outcome.output
    assert "cloud metadata" in outcome.output
    assert [r.path for r in peer.requests] == ["/weather"]
    assert all(host == "127.0.0.1" for host, _ in backend.connected)


async def test_loopback_is_refused_by_default_even_with_a_real_listener() -> None:
    async with http_peer() as peer:
        tools = registry(
            checked(_weather_tool(f"{peer.url}/weather")), network_backend=NoConnectBackend()
        )
        toolset = tools.toolset(fixture_pack("sdk__examples__tools__tools.pack.json"), "assistant")
        outcome = await toolset.execute("get_weather", {"city": "Paris", "country": "FR"})
        await tools.aclose()
    assert outcome.is_error and "loopback" in outcome.output
    assert peer.requests == []
