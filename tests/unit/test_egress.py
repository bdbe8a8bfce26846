"""The guarded HTTP client, against real sockets: a denied address is never connected
to (directly, by a redirect, or through a name), answers are bounded in size and time."""

import ipaddress
from collections.abc import AsyncIterator

import httpx
import pytest

from shared.outside import egress
from shared.outside.egress import Deny, EgressDenied
from tests.support.trap import TRAP_HOST, Listener


@pytest.fixture
async def trap() -> AsyncIterator[Listener]:
    async with Listener(TRAP_HOST) as listener:
        yield listener


DENY_TRAP = Deny.parse(f"{TRAP_HOST}/32")


async def test_a_denied_address_is_never_connected_to(trap: Listener) -> None:
    async with egress.client(DENY_TRAP, timeout=5) as http:
        with pytest.raises(EgressDenied, match="may not reach"):
            await http.get(trap.url)
        # Without the deny list the same request arrives: the trap does listen.
        async with egress.client(egress.NOTHING, timeout=5) as open_http:
            assert (await open_http.get(trap.url)).text == "ok"
    assert trap.connections == 1


async def test_a_redirect_to_a_denied_address_is_not_followed(trap: Listener) -> None:
    redirect = f"HTTP/1.1 302 Found\r\nLocation: {trap.url}\r\nContent-Length: 0\r\n\r\n"
    async with (
        Listener("127.0.0.1", redirect.encode()) as bouncer,
        egress.client(DENY_TRAP, timeout=5, follow_redirects=True) as http,
    ):
        with pytest.raises(EgressDenied):
            await http.get(bouncer.url)
    assert bouncer.connections == 1
    assert trap.connections == 0


async def test_a_name_resolving_to_a_denied_address_is_refused(trap: Listener) -> None:
    # "localhost" resolves to 127.0.0.1 (and ::1): deny loopback, and it is refused.
    async with egress.client(Deny.parse("loopback"), timeout=5) as http:
        with pytest.raises(EgressDenied, match="localhost resolves to"):
            await http.get(f"http://localhost:{trap.port}/")
    await egress.check_url("https://localhost/", egress.NOTHING)
    with pytest.raises(EgressDenied):
        await egress.check_url("https://localhost/", Deny.parse("loopback"))


async def test_only_http_and_https_are_spoken() -> None:
    for url in ("file:///etc/passwd", "ftp://127.0.0.1/", "gopher://127.0.0.1/"):
        with pytest.raises(EgressDenied):
            await egress.check_url(url, egress.NOTHING)
    async with egress.client(egress.NOTHING, timeout=5) as http:
        with pytest.raises((EgressDenied, httpx.UnsupportedProtocol)):
            await http.get("file:///etc/passwd")


async def test_answers_are_bounded_in_size_and_time() -> None:
    big = b"HTTP/1.1 200 OK\r\nContent-Length: 3000000\r\n\r\n" + b"x" * 3_000_000
    async with (
        Listener("127.0.0.1", big) as large,
        egress.client(egress.NOTHING, timeout=5, max_bytes=1 << 20) as http,
    ):
        with pytest.raises(EgressDenied, match="larger than"):
            await http.get(large.url)
    slow = b"HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\n"
    async with (
        Listener("127.0.0.1", slow, drip=True) as dripping,
        egress.client(egress.NOTHING, timeout=0.5) as http,
    ):
        # Each byte arrives well within the 0.5 s step timeout; the whole answer
        # still has a deadline (twice the timeout).
        with pytest.raises(httpx.ReadTimeout):
            await http.get(dripping.url)


def test_the_deny_list_reads_words_and_cidrs_and_names_a_bad_entry() -> None:
    deny = Deny.parse("metadata, 10.1.0.0/16")
    assert deny.covers(ipaddress.ip_address("169.254.169.254"))
    assert deny.covers(ipaddress.ip_address("100.100.100.200"))
    assert deny.covers(ipaddress.ip_address("10.1.2.3"))
    assert deny.covers(ipaddress.ip_address("::ffff:169.254.169.254"))  # IPv4-mapped
    assert not deny.covers(ipaddress.ip_address("10.2.0.1"))
    assert Deny.parse("loopback").covers(ipaddress.ip_address("0.0.0.0"))
    with pytest.raises(ValueError, match="'nowhere' is not a CIDR"):
        Deny.parse("metadata,nowhere")


@pytest.mark.parametrize(
    "address",
    [
        "::ffff:169.254.169.254",  # IPv4-mapped
        "::169.254.169.254",  # IPv4-compatible
        "64:ff9b::a9fe:a9fe",  # NAT64, the well-known prefix
        "64:ff9b:1::a9fe:a9fe",  # NAT64, a local-use /96
        "64:ff9b:1:a9fe:a9:fe00::",  # NAT64, the local-use /48 itself (the "u" octet skipped)
        "64:ff9b:1:ffff:ffa9:fea9:fe00:0",  # NAT64, a /64 inside it
        "2002:a9fe:a9fe::1",  # 6to4: bits 16..48
        "2001:0:4136:e378:8000:63bf:5601:5601",  # Teredo: the client's address, inverted
    ],
)
def test_an_ipv6_address_is_judged_by_the_ipv4_address_it_carries(address: str) -> None:
    deny = Deny.parse("metadata")
    assert deny.covers(ipaddress.ip_address(address))
    with pytest.raises(EgressDenied, match="may not reach"):
        deny.check(f"[{address}]", [address])


@pytest.mark.parametrize(
    "address",
    [
        "::ffff:8.8.8.8",
        "::8.8.8.8",
        "64:ff9b::808:808",
        "64:ff9b:1::808:808",
        "2002:808:808::1",
        "2001:0:4136:e378:8000:63bf:f7f7:f7f7",  # Teredo client 8.8.8.8
        "2001:db8::a9fe:a9fe",  # documentation prefix: no IPv4 inside
        "2600::a9fe:a9fe",  # an ordinary global address whose last bits look like one
    ],
)
def test_an_ipv6_address_carrying_an_allowed_ipv4_address_stays_allowed(address: str) -> None:
    deny = Deny.parse("metadata, link-local, private")
    assert not deny.covers(ipaddress.ip_address(address))
    deny.check(address, [address])


def test_the_ipv6_address_itself_is_still_judged() -> None:
    # An embedded IPv4 address adds a reason to refuse, never removes one.
    assert Deny.parse("64:ff9b::/96").covers(ipaddress.ip_address("64:ff9b::808:808"))
    assert Deny.parse("2002::/16").covers(ipaddress.ip_address("2002:808:808::1"))
    assert Deny.parse("private").covers(ipaddress.ip_address("::ffff:10.0.0.1"))
    assert Deny.parse("loopback").covers(ipaddress.ip_address("::127.0.0.1"))
