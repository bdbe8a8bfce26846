"""Outgoing HTTP to addresses that people or other servers name: one guarded client.

Notification webhooks and robots, registries (and the token realms and next pages
they point to), the OpenID Connect provider and Git remotes are reached only
through what this module allows:

- ``http`` and ``https``, nothing else;
- never an address ``FABU_EGRESS_DENY`` covers (CIDRs, or the words ``loopback``,
  ``private``, ``link-local`` and ``metadata``). The check is made on every
  connection, against the addresses the name resolves to, and the connection is
  then made to the checked address itself: a redirect, a second DNS answer or a
  ``Link`` header cannot lead around it. An IPv6 address that carries an IPv4
  address (mapped, compatible, NAT64, 6to4, Teredo) is judged by both;
- answers of at most ``max_bytes``, read within ``deadline_s`` in all.
"""

import asyncio
import ipaddress
import socket
import time
import urllib.parse
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

import anyio
import httpcore
import httpx

from shared.errors import PermanentError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

SCHEMES = ("http", "https")
# The words FABU_EGRESS_DENY understands, and what each covers.
WORDS: dict[str, tuple[str, ...]] = {
    # 0.0.0.0 and :: reach this machine too.
    "loopback": ("127.0.0.0/8", "::1/128", "0.0.0.0/8", "::/128"),
    "private": ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7"),
    "link-local": ("169.254.0.0/16", "fe80::/10"),
    # Cloud instance metadata: AWS, GCP, Azure, OpenStack (169.254.169.254, and
    # AWS's IPv6 one) and Alibaba Cloud (100.100.100.200).
    "metadata": ("169.254.169.254/32", "fd00:ec2::254/128", "100.100.100.200/32"),
}


# IPv6 forms that carry an IPv4 address, which a host or a gateway on the way may
# reach in its place: each is judged by that IPv4 address as well as by itself.
_COMPATIBLE = ipaddress.IPv6Network("::/96")  # ::a.b.c.d (deprecated, still routed by some)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052's well-known prefix
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")  # RFC 8215, any length within it
# The NAT64 prefix lengths a /48 can hold (RFC 6052: the IPv4 address starts right
# after the prefix and skips bits 64..71, the reserved "u" octet).
_NAT64_LENGTHS = (48, 56, 64, 96)


def _nat64(value: int, length: int) -> ipaddress.IPv4Address:
    """The IPv4 address after a NAT64 prefix of ``length`` bits in a 128-bit ``value``."""
    squeezed = (value >> 64) << 56 | (value & ((1 << 56) - 1))  # 120 bits, no "u" octet
    start = length if length <= 64 else length - 8
    return ipaddress.IPv4Address((squeezed >> (120 - start - 32)) & 0xFFFFFFFF)


def _embedded(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries, in every form that carries one."""
    if address.ipv4_mapped:  # ::ffff:a.b.c.d
        return [address.ipv4_mapped]
    if address.sixtofour:  # 2002:AABB:CCDD::/48
        return [address.sixtofour]
    if address.teredo:  # 2001::/32: (server, client), the client's address inverted
        return [address.teredo[1]]
    value = int(address)
    if address in _COMPATIBLE or address in _NAT64:
        return [ipaddress.IPv4Address(value & 0xFFFFFFFF)]
    if address in _NAT64_LOCAL:
        return [_nat64(value, length) for length in _NAT64_LENGTHS]
    return []


def _judged(address: Address) -> list[Address]:
    if isinstance(address, ipaddress.IPv4Address):
        return [address]
    return [address, *_embedded(address)]


class EgressDenied(PermanentError):
    """An address Fabu may not reach, a scheme it does not speak, or an answer too large."""

    status = 422


@dataclass(frozen=True)
class Deny:
    """The networks Fabu may not reach (none by default)."""

    networks: tuple[Network, ...] = ()

    @classmethod
    def parse(cls, text: str) -> "Deny":
        """``FABU_EGRESS_DENY``: comma-separated CIDRs and words; ValueError naming a bad one."""
        networks: list[Network] = []
        for item in (part.strip() for part in text.split(",")):
            if not item:
                continue
            if item in WORDS:
                networks += [ipaddress.ip_network(n) for n in WORDS[item]]
                continue
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError as exc:
                words = ", ".join(WORDS)
                raise ValueError(
                    f"FABU_EGRESS_DENY: {item!r} is not a CIDR nor one of {words}"
                ) from exc
        return cls(tuple(networks))

    def covers(self, address: Address) -> bool:
        """Whether ``address``, or an IPv4 address it carries, is denied."""
        return any(
            candidate in network for candidate in _judged(address) for network in self.networks
        )

    def check(self, host: str, addresses: Iterable[str]) -> None:
        for text in addresses:
            address = ipaddress.ip_address(text.split("%", 1)[0])
            if self.covers(address):
                what = "" if host.strip("[]") == str(address) else f"{host} resolves to "
                raise EgressDenied(
                    f"{what}{address}, an address Fabu may not reach (FABU_EGRESS_DENY)"
                )


NOTHING = Deny()


def _parts(url: str) -> tuple[str, int]:
    """The host and port of an http(s) URL; EgressDenied for anything else."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise EgressDenied(f"not a valid URL: {exc}") from exc
    if parts.scheme not in SCHEMES or not parts.hostname:
        raise EgressDenied("only http:// and https:// addresses with a host can be reached")
    return parts.hostname, port


async def resolve(host: str, port: int) -> list[str]:
    try:
        found = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise httpcore.ConnectError(f"{host}: {exc}") from exc
    return list(dict.fromkeys(str(info[4][0]) for info in found))


async def check_url(url: str, deny: Deny) -> None:
    """Refuse ``url`` unless it is http(s) and its host resolves outside ``deny``
    (the check before saving an address, or before a client that cannot be guarded
    at connect time)."""
    host, port = _parts(url)
    if deny.networks:
        try:
            addresses = await resolve(host, port)
        except httpcore.ConnectError:
            return  # not resolvable now: nothing reached; the send-time check stays
        deny.check(host, addresses)


class _Guarded(httpcore.AsyncNetworkBackend):
    """Connects only to addresses outside the deny list, to the address it checked."""

    def __init__(self, deny: Deny) -> None:
        self._deny = deny
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await resolve(host, port)
        self._deny.check(host, addresses)
        failed: Exception = httpcore.ConnectError(f"{host}: no address")
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except httpcore.ConnectError as exc:
                failed = exc
        raise failed

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise EgressDenied("unix sockets cannot be reached")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _Bounded(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream, max_bytes: int, deadline: float) -> None:
        self._inner, self._max_bytes, self._deadline = inner, max_bytes, deadline

    async def __aiter__(self) -> AsyncIterator[bytes]:
        read = 0
        async for chunk in self._inner:
            read += len(chunk)
            if read > self._max_bytes:
                raise EgressDenied(f"the answer is larger than {self._max_bytes} bytes")
            if time.monotonic() > self._deadline:
                raise httpx.ReadTimeout("the answer took too long to arrive")
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


class Transport(httpx.AsyncHTTPTransport):
    """httpx's own transport, on a connection pool with the guarded network backend."""

    def __init__(self, deny: Deny, max_bytes: int, deadline_s: float, *, shared: bool = False):
        super().__init__(trust_env=False)
        # The pool httpx builds cannot be given a network backend, so this one
        # replaces it (httpx 0.28 keeps it in ``_pool``; the tests would show a change).
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            network_backend=_Guarded(deny),
            # Every connection is kept for reuse: hundreds of release requests at once
            # each ask the registry, and a new connection is a DNS lookup and a handshake.
            max_connections=100,
            max_keepalive_connections=100,
            keepalive_expiry=5.0,
        )
        self._max_bytes, self._deadline_s, self._shared = max_bytes, deadline_s, shared

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.scheme not in SCHEMES:
            raise EgressDenied("only http:// and https:// addresses can be reached")
        deadline = time.monotonic() + self._deadline_s
        try:
            async with asyncio.timeout(self._deadline_s):
                response = await super().handle_async_request(request)
        except TimeoutError as exc:
            raise httpx.ConnectTimeout("no answer in time", request=request) from exc
        stream = response.stream
        assert isinstance(stream, httpx.AsyncByteStream)  # noqa: S101 - always, for async requests
        response.stream = _Bounded(stream, self._max_bytes, deadline)
        return response

    async def aclose(self) -> None:
        # A transport shared by short-lived clients (authlib makes one per call) is
        # closed with the process, not with each client.
        if not self._shared:
            await super().aclose()

    async def __aexit__(self, *args: object) -> None:
        await self.aclose()


def client(
    deny: Deny,
    *,
    timeout: float,
    max_bytes: int = 1 << 20,
    follow_redirects: bool = False,
) -> httpx.AsyncClient:
    """An httpx client for addresses someone else named: guarded, bounded in size and
    time (``timeout`` for each step, twice that for a whole answer)."""
    return httpx.AsyncClient(
        transport=Transport(deny, max_bytes, 2 * timeout),
        timeout=timeout,
        follow_redirects=follow_redirects,
        max_redirects=5,
    )
