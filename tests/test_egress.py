"""The egress guard (issue 14): refused addresses are never connected to, checked after DNS.

Everything goes through real sockets on loopback and a real ``httpx.Client``: a small HTTP/1.1
server counts the connections it accepts, so "refused before connecting" is observed from the
other end of the wire. Name resolution is injected where a test needs a name to point somewhere
(``metadata.example``, ``api.example.test``); ``localhost`` goes through the system resolver.
"""

from __future__ import annotations

import os
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import ip_address, ip_network
from pathlib import Path
from typing import Any

import httpcore
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from slotkeeper.errors import ConfigError, FencedError, PermanentTargetError
from slotkeeper.targets import egress
from slotkeeper.targets.egress import (
    EGRESS_ALLOW_ENV,
    AddrInfo,
    EgressPolicy,
    EgressRefused,
)
from slotkeeper.targets.fence import WRITE_FENCE
from slotkeeper.targets.http import ApiClient, HttpSettings
from slotkeeper.targets.wire import DirectTransport

#: what a test operator allows to reach the loopback server
LOOPBACK = EgressPolicy.parse(["127.0.0.0/8"], source="--egress-allow")


# -- a loopback HTTP/1.1 server that counts connections --------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so one connection can carry several requests
    server: LoopbackServer

    def do_GET(self) -> None:
        self.server.record(self.path, self.headers.get("Host", ""))
        if self.path == "/truncated":  # promises 10 bytes, sends 2 and hangs up
            self.send_response(200)
            self.send_header("Content-Length", "10")
            self.end_headers()
            self.wfile.write(b"ok")
            self.close_connection = True
            return
        if self.path == "/silent":  # hangs up without answering
            self.close_connection = True
            return
        if self.path == "/slow":  # answered late: requests sent together overlap
            time.sleep(0.3)
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        if self.path == "/last":  # says so: the connection ends with this answer
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        if self.path in ("/last", "/then-hang-up"):  # the second one without saying so
            self.close_connection = True

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.do_GET()

    def log_message(self, format: str, *args: Any) -> None:
        pass


class LoopbackServer(ThreadingHTTPServer):
    """Serves on 127.0.0.1 (TLS when given a context); counts accepted connections."""

    daemon_threads = True

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.tls = tls
        self.connections = 0
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def record(self, path: str, host: str) -> None:
        with self._lock:
            self.requests.append((path, host))

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, peer = super().get_request()
        with self._lock:
            self.connections += 1
        sock.settimeout(5)
        if self.tls is not None:  # a failed handshake closes the socket and is dropped
            sock = self.tls.wrap_socket(sock, server_side=True)
        return sock, peer


@contextmanager
def serving(server: LoopbackServer) -> Iterator[LoopbackServer]:
    with server:
        thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        try:
            yield server
        finally:
            server.shutdown()
            thread.join()


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with serving(LoopbackServer()) as running:
        yield running


def first_connections(server: LoopbackServer) -> int:
    """How many connections ``server`` had accepted before an allowed probe request.

    The probe's connection is accepted after any earlier one (the listen queue is first in,
    first out), so once it is answered the count also covers every connection attempted
    before it: a refusal that had connected would show here.
    """
    with httpx.Client(transport=LOOPBACK.transport(), timeout=5) as client:
        assert client.get(server.url("/probe")).text == "ok"
    return server.connections - 1


# -- injected name resolution and socket spies ------------------------------------------------


@dataclass
class Dns:
    """A resolver called like :func:`socket.getaddrinfo`; each name has successive answers.

    The last answer of a name repeats; an unknown name fails like a real lookup does.
    """

    table: dict[str, list[tuple[str, ...]]]
    calls: list[str] = field(default_factory=list)

    def __call__(self, host: str, port: int, family: int = 0, type: int = 0) -> list[AddrInfo]:
        self.calls.append(host)
        if host not in self.table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        answers = self.table[host]
        ips = answers.pop(0) if len(answers) > 1 else answers[0]
        return [
            (
                socket.AF_INET6 if ":" in ip else socket.AF_INET,
                socket.SOCK_STREAM,
                socket.IPPROTO_TCP,
                "",
                (ip, port, 0, 0) if ":" in ip else (ip, port),
            )
            for ip in ips
        ]


@pytest.fixture
def connects(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Every ``(host, port)`` a socket was opened to (httpcore's sync backend uses
    :func:`socket.create_connection`)."""
    seen: list[tuple[str, int]] = []
    real = socket.create_connection

    def spy(address: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
        seen.append(address)
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", spy)
    return seen


@pytest.fixture
def lookups(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every host the system resolver was asked about after the test started."""
    seen: list[str] = []
    real = socket.getaddrinfo

    def spy(host: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(str(host))
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", spy)
    return seen


def is_ip(text: str) -> bool:
    try:
        ip_address(text)
    except ValueError:
        return False
    return True


# -- connections through httpx ----------------------------------------------------------------


def test_a_loopback_url_is_refused_before_any_connection(server: LoopbackServer) -> None:
    """A loopback URL not allowed is refused before connecting, for good, saying how to allow it."""
    with (
        httpx.Client(transport=EgressPolicy(()).transport(), timeout=5) as client,
        pytest.raises(EgressRefused) as refused,
    ):
        client.get(server.url("/secret"))
    message = str(refused.value)
    assert "refused to connect to 127.0.0.1 (loopback)" in message
    assert "allow it with SLOTKEEPER_EGRESS_ALLOW=127.0.0.1" in message
    # permanent, and not an httpx error the retry loop would retry
    assert isinstance(refused.value, PermanentTargetError)
    assert not isinstance(refused.value, httpx.HTTPError)
    assert (refused.value.host, refused.value.reason) == ("127.0.0.1", "loopback")
    assert first_connections(server) == 0
    assert server.requests == [("/probe", f"127.0.0.1:{server.port}")]


def test_an_allowed_network_reaches_the_server(server: LoopbackServer) -> None:
    """A URL in an allowed network reaches its server, over one connection."""
    with httpx.Client(transport=LOOPBACK.transport(), timeout=5) as client:
        assert client.get(server.url("/fine")).text == "ok"
    assert server.connections == 1


def test_connections_are_kept_alive_one_per_request_in_flight(server: LoopbackServer) -> None:
    """Requests one after another share one connection; four at once have one each, and the
    requests after them reuse those four (each request borrows a pool of its own, see
    targets.pools, and gives it back with its connection open)."""
    with httpx.Client(transport=LOOPBACK.transport(), timeout=5) as client:
        for _ in range(3):
            assert client.get(server.url("/one")).text == "ok"
        assert server.connections == 1
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda _: client.get(server.url("/slow")).text, range(4)))
        assert answers == ["ok"] * 4 and server.connections == 4
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda _: client.get(server.url("/slow")).text, range(4)))
        for _ in range(3):
            client.get(server.url("/one"))
    assert server.connections == 4 and len(server.requests) == 14


def test_localhost_is_refused_after_resolving_it(server: LoopbackServer) -> None:
    """A name is judged by what it resolves to: localhost is refused as loopback, unconnected."""
    with (
        httpx.Client(transport=EgressPolicy().transport(), timeout=5) as client,
        pytest.raises(EgressRefused, match=r"localhost: it resolves to (127\.0\.0\.1|::1)"),
    ):
        client.get(f"http://localhost:{server.port}/")
    assert first_connections(server) == 0


def test_an_ipv6_literal_is_checked_without_a_lookup() -> None:
    """An IPv6 literal is judged as it is, without a DNS lookup."""
    dns = Dns({})
    with (
        httpx.Client(transport=EgressPolicy().transport(resolve=dns), timeout=5) as client,
        pytest.raises(EgressRefused, match=r"::1 \(loopback\)"),
    ):
        client.get("http://[::1]:9/")
    assert dns.calls == []


def test_an_ip_literal_is_connected_to_as_is(
    server: LoopbackServer, connects: list[tuple[str, int]]
) -> None:
    """An allowed IP literal is connected to directly, with no lookup."""
    dns = Dns({})
    with httpx.Client(transport=LOOPBACK.transport(resolve=dns), timeout=5) as client:
        assert client.get(server.url("/")).text == "ok"
    assert dns.calls == []
    assert connects == [("127.0.0.1", server.port)]


def test_a_name_resolving_to_the_metadata_address_is_refused_before_connecting(
    connects: list[tuple[str, int]],
) -> None:
    """A name resolving to the cloud metadata address is refused after one lookup, unconnected."""
    dns = Dns({"metadata.example": [("169.254.169.254",)]})
    with (
        httpx.Client(transport=EgressPolicy().transport(resolve=dns), timeout=5) as client,
        pytest.raises(EgressRefused) as refused,
    ):
        client.get("http://metadata.example/latest/meta-data/")
    assert str(refused.value).startswith(
        "refused to connect to metadata.example: it resolves to 169.254.169.254 (cloud metadata)"
    )
    assert "SLOTKEEPER_EGRESS_ALLOW=169.254.169.254" in str(refused.value)
    assert dns.calls == ["metadata.example"]
    assert connects == []


@pytest.mark.parametrize(
    "answer", [("93.184.216.34", "127.0.0.1"), ("127.0.0.1", "93.184.216.34")], ids=str
)
def test_an_answer_mixing_public_and_loopback_addresses_is_refused(
    server: LoopbackServer, connects: list[tuple[str, int]], answer: tuple[str, ...]
) -> None:
    """A DNS answer holding any refused address is refused whole, in whatever order."""
    dns = Dns({"mixed.example": [answer]})
    with (
        httpx.Client(transport=EgressPolicy().transport(resolve=dns), timeout=5) as client,
        pytest.raises(EgressRefused, match=r"resolves to 127\.0\.0\.1 \(loopback\)"),
    ):
        client.get(f"http://mixed.example:{server.port}/")
    assert connects == []
    assert first_connections(server) == 0


def test_a_name_reaches_its_checked_address_and_keeps_its_host_header(
    server: LoopbackServer, connects: list[tuple[str, int]], lookups: list[str]
) -> None:
    """A name connects to the address checked, keeps its Host header; only the policy resolves."""
    dns = Dns({"api.example.test": [("127.0.0.1",)]})
    with httpx.Client(transport=LOOPBACK.transport(resolve=dns), timeout=5) as client:
        assert client.get(f"http://api.example.test:{server.port}/v1").text == "ok"
    assert server.requests == [("/v1", f"api.example.test:{server.port}")]
    assert connects == [("127.0.0.1", server.port)]
    # the name went to the policy's resolver only; the socket layer saw the address
    assert dns.calls == ["api.example.test"]
    assert lookups and all(is_ip(host) for host in lookups)


def test_one_lookup_per_connection_so_a_rebinding_answer_is_never_used(
    server: LoopbackServer, connects: list[tuple[str, int]]
) -> None:
    """Each connection uses the answer it checked: a rebinding answer is checked anew, refused."""
    # the name answers loopback (allowed here) once, then the metadata address
    dns = Dns({"api.example.test": [("127.0.0.1",), ("169.254.169.254",)]})
    url = f"http://api.example.test:{server.port}"
    with httpx.Client(transport=LOOPBACK.transport(resolve=dns), timeout=5) as client:
        assert client.get(f"{url}/one").text == "ok"
        assert client.get(f"{url}/two").text == "ok"  # same connection, no new lookup
    assert dns.calls == ["api.example.test"]
    assert connects == [("127.0.0.1", server.port)]
    assert server.connections == 1
    with (
        httpx.Client(transport=LOOPBACK.transport(resolve=dns), timeout=5) as client,
        pytest.raises(EgressRefused, match="cloud metadata"),
    ):
        client.get(f"{url}/three")  # a new connection: a new lookup, checked again
    assert dns.calls == ["api.example.test"] * 2
    assert connects == [("127.0.0.1", server.port)]
    assert [path for path, _ in server.requests] == ["/one", "/two"]


def test_checked_addresses_are_tried_in_order(
    server: LoopbackServer, connects: list[tuple[str, int]]
) -> None:
    """A name's checked addresses are tried in order until one connects."""
    # nothing listens on 127.0.0.2 (the server is bound to 127.0.0.1): refused, next address
    dns = Dns({"api.example.test": [("127.0.0.2", "127.0.0.1")]})
    with httpx.Client(transport=LOOPBACK.transport(resolve=dns), timeout=5) as client:
        assert client.get(f"http://api.example.test:{server.port}/").text == "ok"
    assert connects == [("127.0.0.2", server.port), ("127.0.0.1", server.port)]


def test_when_every_checked_address_fails_the_last_connect_error_is_raised(
    server: LoopbackServer, connects: list[tuple[str, int]]
) -> None:
    """When no checked address connects it is a ConnectError; a retry looks the name up again."""
    # retries=1: httpcore connects again after a pause, and that new attempt is a new lookup
    dns = Dns({"api.example.test": [("127.0.0.2", "127.0.0.3")]})
    with (
        httpx.Client(transport=LOOPBACK.transport(resolve=dns, retries=1), timeout=5) as client,
        pytest.raises(httpx.ConnectError),
    ):
        client.get(f"http://api.example.test:{server.port}/")
    assert dns.calls == ["api.example.test"] * 2
    assert connects == [("127.0.0.2", server.port), ("127.0.0.3", server.port)] * 2


def test_an_answer_without_addresses_is_a_connect_error() -> None:
    """A DNS answer with no address is a ConnectError naming the host."""
    dns = Dns({"empty.example": [()]})
    with (
        httpx.Client(transport=EgressPolicy().transport(resolve=dns), timeout=5) as client,
        pytest.raises(httpx.ConnectError, match=r"empty\.example resolves to no IP address"),
    ):
        client.get("http://empty.example/")


def test_a_failed_lookup_stays_a_connect_error() -> None:
    """A failed lookup is a ConnectError, as it is in httpx without the guard."""
    with (
        httpx.Client(transport=EgressPolicy().transport(resolve=Dns({})), timeout=5) as client,
        pytest.raises(httpx.ConnectError, match="Name or service not known"),
    ):
        client.get("http://nowhere.example.test/")


def test_the_api_client_fails_a_refusal_at_once_without_retrying() -> None:
    """The API client fails a refusal at once, unretried, with the target and the call in front."""
    dns = Dns({"metadata.example": [("169.254.169.254",)]})
    api = ApiClient(
        name="probe",
        settings=HttpSettings(base_url="http://metadata.example/latest", headers={}, attempts=5),
        transport=EgressPolicy().transport(resolve=dns),
    )
    try:
        with pytest.raises(PermanentTargetError, match="cloud metadata") as refused:
            api.send("GET", "meta-data")
    finally:
        api.close()
    assert dns.calls == ["metadata.example"]  # one attempt: not a retryable transport error
    # the target's name and the call lead the message; the refusal is its cause
    assert str(refused.value).startswith("probe: GET meta-data: refused to connect")
    assert isinstance(refused.value.__cause__, EgressRefused)


def test_a_truncated_body_is_an_httpx_error_while_reading(server: LoopbackServer) -> None:
    """A body cut short through the guarded transport is httpx's RemoteProtocolError."""
    with (
        httpx.Client(transport=LOOPBACK.transport(), timeout=5) as client,
        pytest.raises(httpx.RemoteProtocolError),
    ):
        client.get(server.url("/truncated"))


def _httpcore_errors() -> list[type[Exception]]:
    found = (getattr(httpcore, name) for name in httpcore.__all__)
    return [
        error
        for error in found
        if isinstance(error, type)
        and issubclass(error, Exception)
        and error is not httpcore.ConnectionNotAvailable  # the pool's own, never raised to us
    ]


@pytest.mark.parametrize("core_error", _httpcore_errors(), ids=lambda error: error.__name__)
def test_httpcore_errors_become_the_httpx_errors_httpx_itself_raises(
    core_error: type[Exception],
) -> None:
    """Each httpcore error through the guarded httpcore transport (taken when socket options
    are given) becomes the httpx error of its name."""

    # raised from inside the network layer (the resolver runs in it), as a socket error would be
    def failing(host: str, port: int, family: int = 0, type: int = 0) -> list[AddrInfo]:
        raise core_error("boom")

    pools = EgressPolicy().transport(resolve=failing, socket_options=())
    with (
        httpx.Client(transport=pools, timeout=5) as client,
        pytest.raises(httpx.TransportError) as raised,
    ):
        client.get("http://api.example.test/")
    assert type(raised.value) is getattr(httpx, core_error.__name__)
    assert str(raised.value) == "boom"


# -- the direct transport: http.client under the guard ---------------------------------------


def test_direct_connections_take_the_standard_library_and_a_proxy_takes_httpcore(
    server: LoopbackServer,
) -> None:
    """Without a proxy the transport is the direct one; a proxy (or an option only httpcore
    has) takes httpcore's pools."""
    assert isinstance(LOOPBACK.transport(), DirectTransport)
    assert not isinstance(LOOPBACK.transport(proxy=server.url("")), DirectTransport)
    assert not isinstance(LOOPBACK.transport(retries=1), DirectTransport)


def test_a_connection_the_server_closed_while_idle_is_not_used_again(
    server: LoopbackServer,
) -> None:
    """A kept connection that the server hung up on while it was idle is replaced before the
    next request is written to it, so the request is sent once, on a new connection; an
    answer that says ``Connection: close`` is not kept either."""
    with httpx.Client(transport=LOOPBACK.transport(), timeout=5) as client:
        assert client.get(server.url("/then-hang-up")).text == "ok"
        time.sleep(0.2)  # the server's close reaches the idle connection
        assert client.post(server.url("/after"), content=b"x").text == "ok"
        assert client.get(server.url("/last")).text == "ok"
        assert client.get(server.url("/after-last")).text == "ok"
    assert server.connections == 3
    assert [path for path, _ in server.requests] == [
        "/then-hang-up",
        "/after",
        "/last",
        "/after-last",
    ]


def test_no_answer_is_a_protocol_error_and_a_refused_connect_a_connect_error(
    server: LoopbackServer,
) -> None:
    """A server that hangs up without answering is httpx's RemoteProtocolError (the request
    was sent: a write's outcome is unknown); a port nobody listens on is a ConnectError (nothing
    was sent)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    with httpx.Client(transport=LOOPBACK.transport(), timeout=5) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            client.get(server.url("/silent"))
        with pytest.raises(httpx.ConnectError):
            client.get(f"http://127.0.0.1:{closed_port}/")
        assert client.get(server.url("/still-fine")).text == "ok"


def test_a_late_answer_is_a_read_timeout_and_a_full_pool_a_pool_timeout(
    server: LoopbackServer,
) -> None:
    """An answer slower than the read timeout is httpx's ReadTimeout; with every connection
    lent out, a request that waits longer than the pool timeout is httpx's PoolTimeout."""
    one = LOOPBACK.transport(limits=httpx.Limits(max_connections=1))
    with httpx.Client(transport=one, timeout=httpx.Timeout(5, pool=0.05)) as client:
        with pytest.raises(httpx.ReadTimeout):
            client.get(server.url("/slow"), timeout=0.1)
        with ThreadPoolExecutor(2) as pool:
            slow = pool.submit(client.get, server.url("/slow"))
            time.sleep(0.1)  # the slow request holds the only connection
            waiting = pool.submit(client.get, server.url("/fine"))
            with pytest.raises(httpx.PoolTimeout):
                waiting.result()
            assert slow.result().text == "ok"


def test_a_fenced_write_leaves_no_byte_on_the_wire(server: LoopbackServer) -> None:
    """With the write fence closed (this process lost the writer lock), the direct transport
    raises FencedError at the socket, before anything of the request is written."""
    token = WRITE_FENCE.set(lambda: False)
    try:
        with (
            httpx.Client(transport=LOOPBACK.transport(), timeout=5) as client,
            pytest.raises(FencedError),
        ):
            client.post(server.url("/write"), content=b"x")
    finally:
        WRITE_FENCE.reset(token)
    time.sleep(0.1)
    assert server.requests == []


def test_an_invalid_header_value_is_refused_without_quoting_it(server: LoopbackServer) -> None:
    """A header value that is not valid HTTP (a credential with a line break) is refused as
    httpx's LocalProtocolError, and neither the message nor its cause quotes the value."""
    with (
        httpx.Client(transport=LOOPBACK.transport(), timeout=5) as client,
        pytest.raises(httpx.LocalProtocolError) as refused,
    ):
        client.get(server.url("/fine"), headers={"Authorization": "Bearer s3cr3t\nX: y"})
    assert "s3cr3t" not in str(refused.value)
    assert refused.value.__cause__ is None and refused.value.__suppress_context__
    assert server.requests == []


# -- proxies ----------------------------------------------------------------------------------


def test_proxy_environment_variables_are_not_used(
    server: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The guarded transport ignores proxy variables in the environment and goes direct."""
    with serving(LoopbackServer()) as proxy:
        for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.setenv(name, proxy.url(""))
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        with httpx.Client(timeout=5) as plain:  # the environment is in effect for httpx...
            assert plain.get(server.url("/proxied")).text == "ok"
        with httpx.Client(transport=LOOPBACK.transport(), timeout=5) as client:
            assert client.get(server.url("/direct")).text == "ok"  # ...but not with the guard
    assert proxy.requests == [(server.url("/proxied"), f"127.0.0.1:{server.port}")]
    assert server.requests == [("/direct", f"127.0.0.1:{server.port}")]


def test_an_explicit_proxy_is_the_address_checked(server: LoopbackServer) -> None:
    """With an explicit proxy the proxy's address is checked, and URL literals too; no lookups."""
    dns = Dns({})  # the proxy resolves target names, not us
    proxied = EgressPolicy().transport(proxy=server.url(""), resolve=dns)
    with (
        httpx.Client(transport=proxied, timeout=5) as client,
        pytest.raises(EgressRefused, match=r"127\.0\.0\.1 \(loopback\)"),
    ):
        client.get("http://api.example.test/x")
    assert first_connections(server) == 0
    with httpx.Client(transport=LOOPBACK.transport(proxy=server.url(""), resolve=dns)) as client:
        assert client.get("http://api.example.test/x").text == "ok"
        with pytest.raises(EgressRefused, match=r"169\.254\.169\.254 \(cloud metadata\)"):
            client.get("http://169.254.169.254/latest/meta-data/")  # a literal: checked here
    assert server.requests[-1] == ("http://api.example.test/x", "api.example.test")
    assert dns.calls == []


def test_a_socks_proxy_is_refused_as_a_setting() -> None:
    """A SOCKS proxy is a configuration error: only http:// and https:// proxies are supported."""
    with pytest.raises(ConfigError, match="only http:// and https:// proxies"):
        EgressPolicy().transport(proxy="socks5://127.0.0.1:1080")


# -- TLS: the socket goes to the address, the handshake to the name ---------------------------


def _tls_files(directory: Path, *, name: str, ip: str | None = None) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for ``name`` (and ``ip``) signed by it."""
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "egress test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName(name)]
    if ip is not None:
        names.append(x509.IPAddress(ip_address(ip)))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, cert_path, key_path = (directory / f for f in ("ca.pem", "cert.pem", "key.pem"))
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca_path, cert_path, key_path


def _tls_server(cert: Path, key: Path, sni: list[str | None]) -> LoopbackServer:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)

    def remember(_sock: ssl.SSLObject, name: str | None, _context: ssl.SSLContext) -> None:
        sni.append(name)

    context.sni_callback = remember
    return LoopbackServer(tls=context)


def _get_over_tls(ca: Path, port: int) -> str:
    dns = Dns({"api.example.test": [("127.0.0.1",)]})
    verify = ssl.create_default_context(cafile=ca)
    with httpx.Client(transport=LOOPBACK.transport(resolve=dns, verify=verify), timeout=5) as c:
        return c.get(f"https://api.example.test:{port}/tls").text


def test_tls_sends_and_verifies_the_url_name_not_the_address(tmp_path: Path) -> None:
    """TLS sends the URL's name as SNI and verifies the certificate for it, not for the address."""
    # the certificate names only api.example.test: verifying against 127.0.0.1 would fail
    ca, cert, key = _tls_files(tmp_path, name="api.example.test")
    sni: list[str | None] = []
    with serving(_tls_server(cert, key, sni)) as server:
        assert _get_over_tls(ca, server.port) == "ok"
    assert sni == ["api.example.test"]
    assert server.requests == [("/tls", f"api.example.test:{server.port}")]


def test_tls_refuses_a_certificate_for_the_address_but_not_the_name(tmp_path: Path) -> None:
    """A certificate valid for the address connected to but not for the URL's name is refused."""
    # valid for the address connected to, not for the URL's name: refused
    ca, cert, key = _tls_files(tmp_path, name="other.example.test", ip="127.0.0.1")
    sni: list[str | None] = []
    with (
        serving(_tls_server(cert, key, sni)) as server,
        pytest.raises(httpx.ConnectError, match="certificate verify failed"),
    ):
        _get_over_tls(ca, server.port)
    assert sni == ["api.example.test"]
    assert server.requests == []


def test_the_default_tls_context_follows_the_ca_bundle_the_environment_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Transports verifying against the default CA bundle (here ``SSL_CERT_FILE``'s) share
    one TLS context while the bundle is unchanged; one opened after the bundle was replaced
    (a mounted trust bundle rotated) trusts the new bundle, not the old one."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    ca, cert, key = _tls_files(tmp_path / "a", name="api.example.test")
    other_ca, _, _ = _tls_files(tmp_path / "b", name="api.example.test")
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(ca.read_bytes())
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    dns = Dns({"api.example.test": [("127.0.0.1",)]})

    def get(port: int) -> str:
        with httpx.Client(transport=LOOPBACK.transport(resolve=dns), timeout=5) as client:
            return client.get(f"https://api.example.test:{port}/tls").text

    with serving(_tls_server(cert, key, [])) as server:
        assert get(server.port) == "ok"
        assert egress._ssl_context(True, True) is egress._ssl_context(True, True)
        before = egress._ssl_context(True, True)
        bundle.write_bytes(other_ca.read_bytes())
        later = bundle.stat().st_mtime_ns + 1_000_000_000  # a second later, whatever the clock
        os.utime(bundle, ns=(later, later))
        assert egress._ssl_context(True, True) is not before
        with pytest.raises(httpx.ConnectError, match="certificate verify failed"):
            get(server.port)


# -- the policy -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("10.0.0.1", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "cloud metadata"),
        ("169.254.1.1", "link-local"),
        ("100.64.0.1", "shared address space"),
        ("100.100.100.200", "cloud metadata"),
        ("192.0.0.192", "cloud metadata"),
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("255.255.255.255", "broadcast"),
        ("240.0.0.1", "reserved"),
        ("192.0.2.1", "reserved"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fe80::1", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("fc00::1", "private"),
        ("fd00:ec2::254", "cloud metadata"),
        ("ff02::1", "multicast"),
        ("2001:db8::1", "reserved"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:169.254.169.254", "cloud metadata"),
        ("::ffff:10.0.0.1", "private"),
        ("64:ff9b::a9fe:a9fe", "cloud metadata"),  # NAT64
        ("2002:7f00:1::1", "loopback"),  # 6to4
        ("::7f00:1", "loopback"),  # IPv4-compatible
        ("::808:808", "reserved"),
        ("8.8.8.8", None),
        ("1.1.1.1", None),
        ("2606:4700:4700::1111", None),
        ("::ffff:8.8.8.8", None),
    ],
)
def test_refusal_reasons(address: str, reason: str | None) -> None:
    """Each special-purpose address is refused with its reason, in any form; public ones pass."""
    assert EgressPolicy().refusal(address) == reason
    assert EgressPolicy().refusal(ip_address(address)) == reason


@pytest.mark.parametrize(
    ("allowed", "address", "reason"),
    [
        ("10.0.0.0/8", "10.1.2.3", None),
        ("10.0.0.0/8", "192.168.1.1", "private"),
        ("10.1.2.3", "10.1.2.3", None),
        ("10.1.2.3", "10.1.2.4", "private"),
        ("127.0.0.0/8", "::ffff:127.0.0.1", None),  # the IPv4 it carries is allowed
        ("169.254.0.0/16", "169.254.169.254", None),  # the operator's word overrides
        ("fd00::/8", "fd00::1", None),
        ("fd00::/8", "10.0.0.1", "private"),
    ],
)
def test_allowed_networks(allowed: str, address: str, reason: str | None) -> None:
    """An allowed network or address lets its own addresses through and nothing else."""
    assert EgressPolicy.parse([allowed], source="--egress-allow").refusal(address) == reason


def test_a_refusal_of_an_ipv4_in_ipv6_form_suggests_the_ipv4() -> None:
    """Refusing an IPv4 address written in IPv6 form suggests allowing the plain IPv4."""
    refused = EgressRefused("::ffff:169.254.169.254", ip_address("::ffff:a9fe:a9fe"), "x")
    assert str(refused).startswith("refused to connect to ::ffff:169.254.169.254 (x);")
    assert "SLOTKEEPER_EGRESS_ALLOW=169.254.169.254" in str(refused)


def test_parse_takes_networks_and_addresses_separated_by_commas_or_spaces() -> None:
    """The allow list takes networks and addresses between commas or spaces, once each, in order."""
    policy = EgressPolicy.parse(
        ["10.0.0.0/8, 192.168.1.10", " fd00::/8\n2001:db8::1 ", "", "10.0.0.0/8"],
        source=EGRESS_ALLOW_ENV,
    )
    assert policy.allowed == (
        ip_network("10.0.0.0/8"),
        ip_network("192.168.1.10/32"),
        ip_network("fd00::/8"),
        ip_network("2001:db8::1/128"),
    )
    assert EgressPolicy.parse([], source=EGRESS_ALLOW_ENV) == EgressPolicy()


@pytest.mark.parametrize("entry", ["example.com", "10.0.0.0/33", "300.1.1.1", "10.0.0.0/8/8", "*"])
@pytest.mark.parametrize("source", ["--egress-allow", EGRESS_ALLOW_ENV])
def test_parse_errors_name_the_source_and_the_entry(entry: str, source: str) -> None:
    """A bad allow-list entry is an error naming the setting it came from and the entry."""
    with pytest.raises(ConfigError) as error:
        EgressPolicy.parse([f"10.0.0.0/8,{entry}"], source=source)
    assert str(error.value).startswith(f"{source}: {entry!r} is not an IP address or network")


def test_parse_refuses_host_bits_rather_than_widening_the_network() -> None:
    """A network with host bits set is refused, both readings offered, never widened."""
    with pytest.raises(ConfigError) as error:
        EgressPolicy.parse(["10.1.2.3/8"], source="--egress-allow")
    assert str(error.value) == (
        "--egress-allow: '10.1.2.3/8' has host bits set; "
        "write 10.0.0.0/8 for the network or 10.1.2.3 for the single address"
    )


def test_checked_addresses_for_connections_outside_httpx() -> None:
    """checked_addresses gives a name's allowed addresses once each, or refuses any refused one."""
    dns = Dns({"api.example.test": [("127.0.0.1", "127.0.0.1", "::1")]})
    resolve: Callable[..., list[AddrInfo]] = dns
    assert EgressPolicy.parse(["127.0.0.0/8", "::1"], source="t").checked_addresses(
        "api.example.test", 443, resolve=resolve
    ) == (ip_address("127.0.0.1"), ip_address("::1"))
    with pytest.raises(EgressRefused, match=r"::1 \(loopback\)"):
        LOOPBACK.checked_addresses("api.example.test", 443, resolve=resolve)
