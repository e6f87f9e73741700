"""The egress guard: which addresses slotkeeper's target connections may reach.

Target URLs come from the operator's targets file, never from the manifests; the guard is the
second line: a name that resolves somewhere unexpected (a DNS answer pointing at
``169.254.169.254``, the cloud's metadata service, at ``localhost:5432`` or at an internal admin
page) is never connected to, whoever changed the DNS. Every address is checked against an
:class:`EgressPolicy`:

- globally routable unicast addresses are allowed, except the cloud metadata addresses below;
- loopback, private (RFC 1918, IPv6 unique local), link-local, shared (RFC 6598), multicast,
  unspecified and reserved addresses are refused, unless the operator allowed a network that
  holds them (``SLOTKEEPER_EGRESS_ALLOW``, e.g. a GitHub Enterprise Server on ``10.0.0.0/8``);
- an IPv6 form that carries an IPv4 address (``::ffff:127.0.0.1``, NAT64, 6to4, IPv4-compatible)
  is judged as the IPv4 address it carries, since that is where the packets end up.

The check runs **after** DNS resolution, where the transport connects
(:meth:`EgressPolicy.transport`): the name is resolved once, every answer is checked, and the
socket connects to an address that was checked. A name checked first and resolved again to
connect could resolve differently the second time (DNS rebinding); here there is no second time.
"""

from __future__ import annotations

import functools
import os
import socket
import ssl
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from ipaddress import (
    IPv4Address,
    IPv4Network,
    IPv6Address,
    IPv6Network,
    ip_address,
    ip_network,
)
from pathlib import Path
from typing import Any

import httpcore
import httpx

from slotkeeper.errors import ConfigError, PermanentTargetError
from slotkeeper.targets.fence import FencedStream
from slotkeeper.targets.pools import PoolLender
from slotkeeper.targets.wire import Connect, DirectTransport

#: the environment variable holding the operator's allowed networks (comma or space separated)
EGRESS_ALLOW_ENV = "SLOTKEEPER_EGRESS_ALLOW"
#: the command-line option that does the same (named in refusals)

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network

#: one answer of :func:`socket.getaddrinfo`: family, type, proto, canonical name, socket address
AddrInfo = tuple[int, int, int, str, tuple[Any, ...]]
#: how names are resolved: :func:`socket.getaddrinfo` or anything called like it
#: (``resolve(host, port, family, type)``); tests inject their own answers through it
Resolver = Callable[[str, int, int, int], Sequence[AddrInfo]]

# Instance metadata services hand out the machine's cloud credentials to any process that asks,
# so they are refused even when globally routable, and named as such in refusals. Where the list
# comes from: the providers' documentation of their metadata services — 169.254.169.254 (AWS EC2
# IMDS; also GCP, Azure IMDS, OpenStack, DigitalOcean, Oracle Cloud), fd00:ec2::254 (AWS IMDS over
# IPv6 on Nitro instances), 169.254.170.2 (AWS ECS task metadata and credentials), 169.254.170.23
# and fd00:ec2::23 (AWS EKS Pod Identity agent), 100.100.100.200 (Alibaba Cloud ECS metadata),
# 168.63.129.16 (Azure WireServer, a public address reachable only from inside Azure) — and, for
# Oracle Cloud's older 192.0.0.192, the public SSRF reference lists (e.g. PayloadsAllTheThings,
# "SSRF URLs for cloud instances"). Only the globally routable ones (192.0.0.192, 168.63.129.16)
# change a decision; the others would be refused anyway and are listed for the clearer reason.
METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    ip_address(a)
    for a in (
        "169.254.169.254",
        "169.254.170.2",
        "169.254.170.23",
        "100.100.100.200",
        "192.0.0.192",
        "168.63.129.16",
        "fd00:ec2::254",
        "fd00:ec2::23",
    )
)

_SHARED = IPv4Network("100.64.0.0/10")  # RFC 6598 carrier-grade NAT
_RFC1918 = (IPv4Network("10.0.0.0/8"), IPv4Network("172.16.0.0/12"), IPv4Network("192.168.0.0/16"))
_BROADCAST = IPv4Address("255.255.255.255")
_UNIQUE_LOCAL = IPv6Network("fc00::/7")  # RFC 4193
_NAT64 = IPv6Network("64:ff9b::/96")  # RFC 6052: a NAT64 gateway forwards to the IPv4 inside
_IPV4_COMPATIBLE = IPv6Network("::/96")  # RFC 4291 (deprecated) ::a.b.c.d

#: httpx's default pool limits (httpx.HTTPTransport's ``limits`` default)
DEFAULT_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)


class EgressRefused(PermanentTargetError):
    """A connection the egress policy does not allow; retrying cannot help, allowing it can.

    A :class:`PermanentTargetError`, not an ``httpx.TransportError``: the HTTP client's retry
    loop retries transport errors, and a refusal must be recorded at once as a failure.
    """

    def __init__(self, host: str, address: IPAddress, reason: str) -> None:
        self.host = host
        self.address = address
        self.reason = reason
        shown = _allow_entry(address)
        where = host if _literal(host) == address else f"{host}: it resolves to {address}"
        super().__init__(
            f"refused to connect to {where} ({reason}); targets are reached only at globally "
            f"routable addresses unless the operator allows more: allow it with "
            f"{EGRESS_ALLOW_ENV}={shown}"
        )


@dataclass(frozen=True)
class EgressPolicy:
    """Where connections may go: public addresses, plus the operator's ``allowed`` networks."""

    allowed: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(cls, values: Iterable[str], *, source: str) -> EgressPolicy:
        """The policy allowing the networks in ``values`` (CIDRs or single addresses).

        Each value may hold several entries separated by commas or white space, so one
        environment variable or several values both work. ``source`` names where the values came
        from (``SLOTKEEPER_EGRESS_ALLOW``) for the error message. A
        network with host bits set (``10.1.2.3/8``) is refused rather than widened, since the
        operator may have meant the single address.
        """
        networks: list[IPNetwork] = []
        for value in values:
            for entry in value.replace(",", " ").split():
                networks.append(_parse_entry(entry, source))
        return cls(tuple(dict.fromkeys(networks)))

    def refusal(self, address: IPAddress | str) -> str | None:
        """None when ``address`` may be reached, else a short reason ("loopback", ...)."""
        ip = ip_address(address) if isinstance(address, str) else address
        if self._allowed(ip):
            return None
        return _reason(ip)

    def checked_addresses(
        self, host: str, port: int, *, resolve: Resolver = socket.getaddrinfo
    ) -> tuple[IPAddress, ...]:
        """The addresses ``host`` may be reached at, in the resolver's order; each was checked.

        An IP literal is checked as it is (no lookup). A name is resolved once; if any answer is
        refused the whole name is (:class:`EgressRefused`): an answer mixing a public and a
        metadata address is hostile, and which one a client picks is not ours to guess.
        A failed lookup raises :class:`OSError`, as :func:`socket.getaddrinfo` does.

        For connections made outside httpx, connect to the returned addresses, never to ``host``.
        """
        literal = _literal(host)
        if literal is not None:
            addresses: tuple[IPAddress, ...] = (literal,)
        else:
            answers = resolve(host, port, 0, socket.SOCK_STREAM)
            addresses = tuple(
                dict.fromkeys(
                    ip_address(sockaddr[0])
                    for family, _type, _proto, _name, sockaddr in answers
                    if family in (socket.AF_INET, socket.AF_INET6)
                )
            )
            if not addresses:
                raise OSError(f"{host} resolves to no IP address")
        for address in addresses:
            reason = self.refusal(address)
            if reason is not None:
                raise EgressRefused(host, address, reason)
        return addresses

    def transport(
        self,
        *,
        resolve: Resolver = socket.getaddrinfo,
        verify: ssl.SSLContext | bool = True,
        trust_env: bool = True,
        http1: bool = True,
        http2: bool = False,
        limits: httpx.Limits = DEFAULT_LIMITS,
        retries: int = 0,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
        proxy: str | httpx.URL | httpx.Proxy | None = None,
    ) -> httpx.BaseTransport:
        """An httpx transport that connects only where this policy allows, checked after DNS.

        The keyword arguments mean what they mean for :class:`httpx.HTTPTransport` (``trust_env``
        there and here only decides whether ``SSL_CERT_FILE``/``SSL_CERT_DIR`` are read).
        Direct HTTP/1.1 connections, the usual case, go through the standard library
        (:class:`slotkeeper.targets.wire.DirectTransport`, half the interpreter's time per
        request); a proxy, HTTP/2, connect retries, a local address or socket options take
        httpcore's pools with the guard in their network layer (:class:`GuardedBackend`).

        TLS is unaffected by the guard: the socket goes to a checked IP address, and the TLS
        handshake on it still sends the URL's host name (SNI) and verifies the certificate
        against that name: TLS starts with the origin's host, not the address.

        Proxies: an ``httpx.Client`` given a transport ignores ``HTTP_PROXY``/``HTTPS_PROXY``/
        ``ALL_PROXY`` (httpx reads them only when it builds its own transport), so by default
        nothing is proxied. With ``proxy=``, connections go to the proxy, so the guard checks
        the *proxy's* address (the operator's choice: allow its network) and the proxy resolves
        target names itself; the guard can then only refuse target URLs whose host is a refused
        IP literal, and the proxy must enforce its own egress rules for names.
        """
        ssl_context = _ssl_context(verify, trust_env)
        direct = proxy is None and http1 and not http2
        if direct and not retries and local_address is None and socket_options is None:
            return DirectTransport(self._connector(resolve, ssl_context), limits=limits)
        # ``proxy`` is passed only when set: ConnectionPool takes it from httpcore 1.0.7 on
        proxied: dict[str, Any] = {} if proxy is None else {"proxy": _core_proxy(proxy)}
        backend = GuardedBackend(self, resolve=resolve)
        options = list(socket_options) if socket_options is not None else None

        def one_connection() -> httpcore.ConnectionPool:
            return httpcore.ConnectionPool(
                ssl_context=ssl_context,
                max_connections=1,  # lent to one request at a time (see targets.pools)
                keepalive_expiry=limits.keepalive_expiry,
                http1=http1,
                http2=http2,
                retries=retries,
                local_address=local_address,
                network_backend=backend,
                socket_options=options,
                **proxied,
            )

        pools = PoolLender(
            one_connection,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
        )
        return _GuardedTransport(self, pools)

    def _connector(self, resolve: Resolver, ssl_context: ssl.SSLContext) -> Connect:
        """How the direct transport opens a connection: the host resolved once through this
        policy, the checked addresses tried in order (as :func:`socket.create_connection`
        would), then TLS for ``https`` with the URL's host name (SNI, certificate check)."""

        def connect(scheme: str, host: str, port: int, timeout: float | None) -> socket.socket:
            failure: OSError | None = None
            for address in self.checked_addresses(host, port, resolve=resolve):
                try:
                    sock = socket.create_connection((str(address), port), timeout)
                    break
                except OSError as exc:
                    failure = exc
            else:
                assert failure is not None  # checked_addresses returns at least one address
                raise failure
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if scheme == "https":
                    return ssl_context.wrap_socket(sock, server_hostname=host)
            except BaseException:
                sock.close()
                raise
            return sock

        return connect

    def _allowed(self, ip: IPAddress) -> bool:
        candidates: list[IPAddress] = [ip]
        carried = _carried_ipv4(ip) if isinstance(ip, IPv6Address) else None
        if carried is not None:
            candidates.append(carried)
        return any(
            candidate.version == network.version and candidate in network
            for candidate in candidates
            for network in self.allowed
        )


class GuardedBackend(httpcore.NetworkBackend):
    """httpcore's network layer with the egress check between name resolution and connect.

    httpcore calls :meth:`connect_tcp` with the URL's host for every new connection (or the
    proxy's host when proxied); this resolves it once through the policy and hands the inner
    backend (httpcore's plain socket backend) an IP address, which it connects to without a
    lookup. The addresses are tried in order, as :func:`socket.create_connection` would.
    """

    def __init__(
        self,
        policy: EgressPolicy,
        *,
        resolve: Resolver = socket.getaddrinfo,
        inner: httpcore.NetworkBackend | None = None,
    ) -> None:
        self._policy = policy
        self._resolve = resolve
        self._inner = inner if inner is not None else httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            addresses = self._policy.checked_addresses(host, port, resolve=self._resolve)
        except OSError as exc:  # a failed lookup stays what it was: a (retryable) connect error
            raise httpcore.ConnectError(str(exc)) from exc
        failure: httpcore.ConnectError | httpcore.ConnectTimeout | None = None
        for address in addresses:
            try:
                return FencedStream(
                    self._inner.connect_tcp(
                        str(address),
                        port,
                        timeout=timeout,
                        local_address=local_address,
                        socket_options=socket_options,
                    )
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None  # checked_addresses returns at least one address
        raise failure

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class _GuardedTransport(httpx.BaseTransport):
    """httpx's transport contract over httpcore pools that use :class:`GuardedBackend`, one
    lent to each request in flight (:class:`slotkeeper.targets.pools.PoolLender`).

    This does what ``httpx.HTTPTransport.handle_request`` does (httpx request to httpcore
    request, httpcore errors to httpx errors, also while the body is read) with public API only.
    ``httpx.HTTPTransport`` cannot take a network backend (httpx 0.28), and swapping the pool
    it keeps in a private attribute would break silently if httpx renamed it. Errors that are
    not httpcore's — :class:`EgressRefused` — pass through unchanged, as in httpx.
    """

    def __init__(self, policy: EgressPolicy, pools: PoolLender[httpcore.ConnectionPool]) -> None:
        self._policy = policy
        self._pools = pools

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if not isinstance(request.stream, httpx.SyncByteStream):  # pragma: no cover
            raise TypeError("an async request body was given to a synchronous transport")
        literal = _literal(request.url.host)
        if literal is not None:  # refused before the pool, even when a proxy would connect
            reason = self._policy.refusal(literal)
            if reason is not None:
                raise EgressRefused(request.url.host, literal, reason)
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        timeout = request.extensions.get("timeout", {}).get("pool")
        with _httpx_errors():
            pool = self._pools.borrow(timeout)
        try:
            with _httpx_errors():
                core_response = pool.handle_request(core_request)
        except BaseException:
            self._pools.give_back(pool)
            raise
        body = core_response.stream
        if not isinstance(body, Iterable):  # pragma: no cover
            raise TypeError("httpcore returned an async body to a synchronous transport")
        return httpx.Response(
            status_code=core_response.status,
            headers=core_response.headers,
            stream=_ResponseStream(body, lambda: self._pools.give_back(pool)),
            extensions=core_response.extensions,
        )

    def close(self) -> None:
        self._pools.close()


class _ResponseStream(httpx.SyncByteStream):
    """A response body whose read errors are httpx errors, as with ``httpx.HTTPTransport``;
    once closed, its connection's pool goes back to the lender (``done``, run once)."""

    def __init__(self, stream: Iterable[bytes], done: Callable[[], None]) -> None:
        self._stream = stream
        self._done: Callable[[], None] | None = done

    def __iter__(self) -> Iterator[bytes]:
        with _httpx_errors():
            yield from self._stream

    def close(self) -> None:
        try:
            close = getattr(self._stream, "close", None)
            if close is not None:
                close()
        finally:
            done, self._done = self._done, None
            if done is not None:
                done()


# httpcore's errors and the httpx errors httpx.HTTPTransport turns them into, most specific
# first (the same table as httpx's own; a test compares every httpcore error with httpx's name).
_ERRORS: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.ProxyError, httpx.ProxyError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
)


@contextmanager
def _httpx_errors() -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        for core_error, httpx_error in _ERRORS:
            if isinstance(exc, core_error):
                raise httpx_error(str(exc)) from exc
        raise


def _core_proxy(proxy: str | httpx.URL | httpx.Proxy) -> httpcore.Proxy:
    """httpcore's form of an HTTP(S) proxy, as httpx.HTTPTransport builds it."""
    given = proxy if isinstance(proxy, httpx.Proxy) else httpx.Proxy(url=proxy)
    if given.url.scheme not in ("http", "https"):
        raise ConfigError(
            f"proxy {given.url.scheme}://{given.url.host}: only http:// and https:// proxies "
            "are supported with the egress guard"
        )
    return httpcore.Proxy(
        url=httpcore.URL(
            scheme=given.url.raw_scheme,
            host=given.url.raw_host,
            port=given.url.port,
            target=given.url.raw_path,
        ),
        auth=given.raw_auth,
        headers=given.headers.raw,
        ssl_context=given.ssl_context,
    )


def _parse_entry(entry: str, source: str) -> IPNetwork:
    try:
        return ip_network(entry, strict=True)
    except ValueError as exc:
        try:
            wider = ip_network(entry, strict=False)
        except ValueError:
            raise ConfigError(
                f"{source}: {entry!r} is not an IP address or network "
                "(expected e.g. 10.0.0.0/8, 192.168.1.10 or fd00::/8)"
            ) from exc
        raise ConfigError(
            f"{source}: {entry!r} has host bits set; write {wider} for the network "
            f"or {entry.split('/')[0]} for the single address"
        ) from exc


def _ssl_context(verify: ssl.SSLContext | bool, trust_env: bool) -> ssl.SSLContext:
    """httpx's TLS context for ``verify``; the default one (verify the certificates against
    the CA bundle) made once and shared by the process's transports as long as the bundle it
    was made from is unchanged on disk: loading it took 20 ms for every target opened, and
    each of the daemon's reconciles opens its targets again. A bundle replaced (a mounted
    trust bundle rotated) gives a new context to the transports opened after it."""
    if verify is not True:
        return httpx.create_ssl_context(verify=verify, trust_env=trust_env)
    return _default_context(trust_env, *_bundle(trust_env))


def _bundle(trust_env: bool) -> tuple[str, int, int]:
    """Where the default context's certificates come from, as httpx chooses: the file or
    directory ``SSL_CERT_FILE`` or ``SSL_CERT_DIR`` names, with its modification time and
    size; else certifi's bundle ("", which changes only with the installed package)."""
    named = trust_env and (os.environ.get("SSL_CERT_FILE") or os.environ.get("SSL_CERT_DIR"))
    if not named:
        return "", 0, 0
    try:
        found = Path(named).stat()
    except OSError:
        return named, 0, -1
    return named, found.st_mtime_ns, found.st_size


@functools.lru_cache(maxsize=4)
def _default_context(trust_env: bool, path: str, modified: int, size: int) -> ssl.SSLContext:
    return httpx.create_ssl_context(verify=True, trust_env=trust_env)


@functools.lru_cache(maxsize=256)
def _literal(host: str) -> IPAddress | None:
    """The address when ``host`` is an IP literal (brackets allowed), else None (asked for
    every request: a target's few hosts are parsed once)."""
    try:
        return ip_address(host.removeprefix("[").removesuffix("]"))
    except ValueError:
        return None


def _carried_ipv4(ip: IPv6Address) -> IPv4Address | None:
    """The IPv4 address an IPv6 form delivers to: mapped, NAT64, 6to4 or IPv4-compatible."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64 or (ip in _IPV4_COMPATIBLE and int(ip) > 1):  # not :: or ::1
        return IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _reason(ip: IPAddress) -> str | None:
    """Why ``ip`` is refused without an allowed network, or None when it is public."""
    if isinstance(ip, IPv4Address):
        return _reason_v4(ip)
    plain = IPv6Address(int(ip))  # without a %scope, for comparisons with the metadata set
    if plain.is_unspecified:
        return "unspecified"
    if plain.is_loopback:
        return "loopback"
    carried = _carried_ipv4(plain)
    if carried is not None:
        reason = _reason_v4(carried)
        if reason is None and plain in _IPV4_COMPATIBLE:
            return "reserved"  # a deprecated form no public service is reached at
        return reason
    if plain in METADATA_ADDRESSES:
        return "cloud metadata"
    if plain.is_link_local:
        return "link-local"
    if plain.is_multicast:
        return "multicast"
    if plain in _UNIQUE_LOCAL or plain.is_site_local:
        return "private"
    if not plain.is_global or plain.is_reserved:
        return "reserved"
    return None


def _reason_v4(ip: IPv4Address) -> str | None:
    if ip.is_unspecified:
        return "unspecified"
    if ip in METADATA_ADDRESSES:
        return "cloud metadata"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if ip in _SHARED:
        return "shared address space"
    if any(ip in network for network in _RFC1918):
        return "private"
    if ip == _BROADCAST:
        return "broadcast"
    if not ip.is_global:
        return "reserved"
    return None


def _allow_entry(address: IPAddress) -> str:
    """The narrowest ``--egress-allow`` entry that lets ``address`` through."""
    if isinstance(address, IPv6Address):
        carried = _carried_ipv4(IPv6Address(int(address)))
        if carried is not None:
            return str(carried)
        return str(IPv6Address(int(address)))
    return str(address)


def policy_from_env() -> EgressPolicy:
    """The operator's policy: public addresses plus the networks ``SLOTKEEPER_EGRESS_ALLOW``
    lists (a bad entry is a ``ConfigError`` naming it)."""
    return EgressPolicy.parse([os.environ.get(EGRESS_ALLOW_ENV, "")], source=EGRESS_ALLOW_ENV)


def guarded_transport(base_url: str) -> httpx.BaseTransport:
    """The transport a target client at ``base_url`` uses: the operator's policy from the
    environment, through the operator's proxy when ``HTTPS_PROXY``/``HTTP_PROXY``/``ALL_PROXY``
    name one for that URL (``NO_PROXY`` respected); the proxy's own address must then be
    allowed, and the proxy resolves target names itself."""
    url = urllib.parse.urlsplit(base_url)
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(url.scheme) or proxies.get("all")
    bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]
    if proxy and bypass(url.hostname or "", proxies):
        proxy = None
    return policy_from_env().transport(proxy=proxy or None)
