"""Who the members are: DNS A records of SERVICE_NAME (or PEERS), this node's address and ID."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Sequence

import dns.asyncresolver
import dns.exception
import dns.resolver

log = logging.getLogger("talentnest.cluster")


def node_id_for(address: str) -> int:
    """The seed's rule: the last two octets of the IPv4 address, ``c*256 + d``."""
    octets = ipaddress.IPv4Address(address).packed
    return octets[2] * 256 + octets[3]


def _is_local(address: str) -> bool:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind((address, 0))
        return True
    except OSError:
        return False


def _source_address_towards(target: str) -> str | None:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect((target, 9))  # UDP connect sends nothing; it only picks a route
            return probe.getsockname()[0]
    except OSError:
        return None


def detect_address(*, advertise: str | None, host: str, listed: Sequence[str], hostname: str | None = None) -> str | None:
    """This node's own IPv4 as peers see it, or None when it cannot be told yet.

    In order: ADVERTISE_ADDRESS; HOST when it names one address; the DNS answer that is one of
    this machine's addresses (Docker, Kubernetes); the address of this host's name; the source
    address of the route towards a peer.
    """
    if advertise:
        return advertise
    try:
        if ipaddress.IPv4Address(host) != ipaddress.IPv4Address("0.0.0.0"):
            return host
    except ValueError:
        pass
    non_loopback = [a for a in listed if not ipaddress.IPv4Address(a).is_loopback]
    local = [a for a in non_loopback if _is_local(a)]
    if len(local) == 1:
        return local[0]
    try:
        own = socket.gethostbyname(hostname or socket.gethostname())
        if not ipaddress.IPv4Address(own).is_loopback:
            return own
    except OSError:
        pass
    for peer in non_loopback:
        source = _source_address_towards(peer)
        if source and not ipaddress.IPv4Address(source).is_loopback:
            return source
    return None


def fallback_address() -> str:
    """The address of the default route (no packet is sent), else 127.0.0.1: enough for a node alone."""
    source = _source_address_towards("192.0.2.1")  # TEST-NET-1: only the routing table is consulted
    return source or "127.0.0.1"


def own_address(*, advertise: str | None, host: str, listed: Sequence[str]) -> str:
    """``detect_address``, or the default route's address (said in the log) when nothing tells it."""
    address = detect_address(advertise=advertise, host=host, listed=listed)
    if address is None:
        address = fallback_address()
        log.warning(
            "cluster: no DNS record or host name tells this node's address; advertising %s "
            "(set ADVERTISE_ADDRESS if peers reach this node elsewhere)",
            address,
        )
    return address


class Discovery:
    """Resolves the member list with a real DNS query every time it is asked.

    ``resolve()`` returns the sorted IPv4 addresses; on a DNS failure it returns the last good
    answer (a DNS outage must not make a healthy cluster forget itself) and logs once.
    """

    def __init__(self, service_name: str, *, dns_server: tuple[str, int] | None, peers: Sequence[str], timeout: float):
        self.service_name = service_name
        self.peers = tuple(peers)
        self._last: list[str] = list(self.peers)
        self._failing = False
        self._answered = False
        self._resolver: dns.asyncresolver.Resolver | None = None
        if not self.peers:
            resolver = dns.asyncresolver.Resolver(configure=dns_server is None)
            if dns_server is not None:
                resolver.nameservers = [dns_server[0]]
                resolver.port = dns_server[1]
            resolver.lifetime = timeout
            resolver.timeout = timeout
            resolver.cache = None
            self._resolver = resolver

    @property
    def static(self) -> bool:
        """The members are the fixed PEERS list, not a DNS answer."""
        return bool(self.peers)

    @property
    def answered(self) -> bool:
        """A DNS server has answered a lookup (NXDOMAIN and empty answers included): until then an empty
        member list means "not known yet", not "alone"."""
        return self._resolver is None or self._answered

    @property
    def source(self) -> str:
        return "PEERS" if self.static else f"DNS {self.service_name}"

    async def resolve(self) -> list[str]:
        if self._resolver is None:
            return list(self.peers)
        try:
            # dnspython finishes a query even when the awaiting task is cancelled; shielding it
            # lets our task be cancelled at once while the query ends on its own.
            query = asyncio.ensure_future(self._resolver.resolve(self.service_name, "A", search=True))
            query.add_done_callback(lambda q: q.cancelled() or q.exception())  # never an unread error
            answer = await asyncio.shield(query)
            addresses = sorted({r.address for r in answer}, key=lambda a: ipaddress.IPv4Address(a))
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            addresses = []  # the name exists in no record: no member is up (Docker drops stopped ones)
        except (dns.exception.DNSException, OSError) as exc:
            if not self._failing:
                log.warning("discovery: DNS lookup of %s failed (%s); keeping the last member list", self.service_name, exc)
                self._failing = True
            return list(self._last)
        if self._failing:
            log.info("discovery: DNS lookup of %s works again", self.service_name)
            self._failing = False
        self._answered = True
        self._last = addresses
        return addresses
