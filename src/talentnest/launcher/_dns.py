"""A tiny authoritative DNS server over UDP that answers the cluster's names the way Docker's DNS does."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

log = logging.getLogger("talentnest.launcher.dns")

# Answers are never cached: a stopped node must vanish from the next lookup (Docker's DNS does the same).
TTL = 0

# ``lookup(name)`` gets a lower-case name without the trailing dot and returns the addresses to
# answer (possibly none: the name exists but has no live node), or None when the name is unknown.
# It may raise ``NoAnswer`` (the query is dropped, as by a resolver that is down) or ``ServerFailure``.
Lookup = Callable[[str], Sequence[str] | None]


class NoAnswer(Exception):
    """Raised by a lookup: send nothing back (the asker times out, as with a resolver that is down)."""


class ServerFailure(Exception):
    """Raised by a lookup: answer SERVFAIL (a resolver that cannot reach its upstream)."""


def normalise(name: str) -> str:
    return name.rstrip(".").lower()


def answer(query: bytes, lookup: Lookup) -> bytes | None:
    """The reply to one packet, or None when the packet is not a DNS query worth answering."""
    try:
        request = dns.message.from_wire(query)
    except (dns.exception.DNSException, ValueError, IndexError):
        return None
    if request.flags & dns.flags.QR or not request.question:
        return None
    reply = dns.message.make_response(request)
    reply.flags |= dns.flags.AA
    question = request.question[0]
    try:
        addresses = lookup(normalise(question.name.to_text()))
    except NoAnswer:
        return None
    except ServerFailure:
        reply.set_rcode(dns.rcode.SERVFAIL)
        return reply.to_wire()
    if addresses is None:
        reply.set_rcode(dns.rcode.NXDOMAIN)
    elif question.rdtype in (dns.rdatatype.A, dns.rdatatype.ANY) and addresses:
        reply.answer.append(dns.rrset.from_text_list(question.name, TTL, dns.rdataclass.IN, dns.rdatatype.A, list(addresses)))
    return reply.to_wire()


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, lookup: Lookup):
        self._lookup = lookup
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport) -> None:
        self._transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        try:
            reply = answer(data, self._lookup)
        except Exception:  # a bad lookup must never take the server down with it
            log.exception("dns: failed to answer a query from %s", addr)
            return
        if reply is not None and self._transport is not None:
            self._transport.sendto(reply, addr)


class DNSServer:
    """UDP DNS on ``host:port`` (port 0 picks a free one; ``address`` says which after ``start``)."""

    def __init__(self, host: str, port: int, lookup: Lookup):
        self._host = host
        self._port = port
        self._lookup = lookup
        self._transport: asyncio.DatagramTransport | None = None

    @property
    def address(self) -> tuple[str, int]:
        if self._transport is None:
            raise RuntimeError("DNS server is not started")
        host, port = self._transport.get_extra_info("sockname")[:2]
        return host, port

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(
            lambda: _Protocol(self._lookup), local_addr=(self._host, self._port)
        )

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
