"""The egress guard at its edges: certificates are verified by default, the policy cannot be
changed once made, the operator's proxy variables (and NO_PROXY) decide where a target's
connection goes, and IPv4 carried in IPv6 is judged to the last bit (issue 15: the mutants
these tests kill)."""

from __future__ import annotations

import dataclasses
import ssl
from collections.abc import Iterator
from ipaddress import IPv4Network
from pathlib import Path

import httpx
import pytest

from slotkeeper.targets.egress import EgressPolicy, EgressRefused, guarded_transport
from tests.test_egress import LOOPBACK, Dns, LoopbackServer, _tls_files, _tls_server, serving

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture
def proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[LoopbackServer]:
    """A loopback server standing in for the operator's proxy, no proxy variable set yet."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    with serving(LoopbackServer()) as server:
        yield server


def fetch(url: str) -> str:
    with httpx.Client(transport=guarded_transport(url), timeout=5) as client:
        return client.get(url).text


def test_an_unknown_certificate_authority_is_refused_by_default(tmp_path: Path) -> None:
    """Without a verify argument the system's trust store decides: a test CA is not in it."""
    _, cert, key = _tls_files(tmp_path, name="api.example.test")
    dns = Dns({"api.example.test": [("127.0.0.1",)]})
    with (
        serving(_tls_server(cert, key, [])) as server,
        httpx.Client(transport=LOOPBACK.transport(resolve=dns), timeout=5) as client,
        pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"),
    ):
        client.get(f"https://api.example.test:{server.port}/tls")
    assert server.requests == []


def test_a_policy_cannot_be_widened_once_made() -> None:
    """The allowed networks are fixed when the policy is parsed."""
    policy = EgressPolicy.parse(["10.0.0.0/8"], source="test")
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.allowed = (IPv4Network("0.0.0.0/0"),)  # type: ignore[misc]


@pytest.mark.parametrize("variable", ["HTTP_PROXY", "ALL_PROXY"])
def test_a_target_goes_through_the_operators_proxy(
    proxy: LoopbackServer, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    """The scheme's proxy variable, or ALL_PROXY, sends the request to the proxy (which
    resolves the target's name itself)."""
    monkeypatch.setenv(variable, proxy.url(""))
    assert fetch("http://api.example.test/deployments") == "ok"
    assert proxy.requests == [("http://api.example.test/deployments", "api.example.test")]


def test_no_proxy_sends_a_target_direct(
    proxy: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A host NO_PROXY names is connected to directly (checked by the guard), not proxied."""
    with serving(LoopbackServer()) as target:
        monkeypatch.setenv("HTTP_PROXY", proxy.url(""))
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        assert fetch(target.url("/direct")) == "ok"
    assert proxy.requests == []
    assert target.requests == [("/direct", f"127.0.0.1:{target.port}")]


def test_without_proxy_variables_nothing_is_proxied(proxy: LoopbackServer) -> None:
    """No variable, no proxy: the target is connected to itself."""
    with serving(LoopbackServer()) as target:
        assert fetch(target.url("/direct")) == "ok"
    assert proxy.requests == []


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("64:ff9b::ffff:ffff", "broadcast"),  # 255.255.255.255, not ...254
        ("64:ff9b::1", "reserved"),  # 0.0.0.1, not 0.0.0.0
        ("64:ff9b::", "unspecified"),
    ],
)
def test_nat64_carries_the_ipv4_address_to_its_last_bit(address: str, reason: str) -> None:
    """The IPv4 address inside a NAT64 form is taken whole."""
    assert EgressPolicy().refusal(address) == reason


@pytest.mark.parametrize(
    ("address", "entry"),
    [("::1", "::1"), ("::2", "0.0.0.2"), ("::ffff:10.1.2.3", "10.1.2.3")],
)
def test_a_refusal_suggests_the_narrowest_entry(address: str, entry: str) -> None:
    """IPv6 loopback is itself; an IPv4-compatible or mapped form names the IPv4 it carries."""
    with pytest.raises(EgressRefused) as refused:
        EgressPolicy().checked_addresses(address, 443)
    assert str(refused.value).endswith(f"SLOTKEEPER_EGRESS_ALLOW={entry}")


def test_the_guard_speaks_http_1_1_even_to_a_server_offering_http_2(tmp_path: Path) -> None:
    """HTTP/2 is never offered (ALPN), so a server preferring it still answers in HTTP/1.1."""
    ca, cert, key = _tls_files(tmp_path, name="api.example.test")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.set_alpn_protocols(["h2", "http/1.1"])
    dns = Dns({"api.example.test": [("127.0.0.1",)]})
    verify = ssl.create_default_context(cafile=ca)
    with (
        serving(LoopbackServer(tls=context)) as server,
        httpx.Client(transport=LOOPBACK.transport(resolve=dns, verify=verify), timeout=5) as c,
    ):
        answer = c.get(f"https://api.example.test:{server.port}/tls")
    assert (answer.text, answer.http_version) == ("ok", "HTTP/1.1")
