"""The simulated DNS: the answer Docker's embedded DNS would give (every node whose process runs,
paused ones included), and the faults a real resolver shows: NXDOMAIN, an empty answer, a partial
or wrong one, or no answer at all (a timeout).

Each node's ``Resolver`` is the real ``cluster.discovery.Discovery`` with its dnspython resolver
replaced by :class:`FakeResolver`, so the node's own handling of each answer is what is tested.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace

import dns.exception
import dns.resolver

from talentnest.cluster.discovery import Discovery
from talentnest.config import Settings

DNS_MODES = ("nxdomain", "empty", "partial", "wrong", "timeout")
QUERY_DELAY = 0.0005


@dataclass
class Override:
    """A DNS fault as seen by some nodes: ``mode`` one of DNS_MODES; for ``partial`` the answer keeps
    only ``keep``; for ``wrong`` it also lists ``extra`` (addresses where no node runs)."""

    mode: str
    targets: frozenset[str]  # the addresses of the nodes whose lookups see it
    keep: frozenset[str] = frozenset()
    extra: frozenset[str] = frozenset()


class SimDNS:
    def __init__(self, running: Callable[[], list[str]]):
        self._running = running
        self.overrides: list[Override] = []
        self.queries = 0

    def answer_for(self, asker: str) -> list[str] | Exception | None:
        """The addresses ``asker`` gets, or the exception its resolver raises (None: no answer)."""
        self.queries += 1
        true = self._running()
        for override in reversed(self.overrides):
            if asker not in override.targets:
                continue
            if override.mode == "nxdomain":
                return dns.resolver.NXDOMAIN()
            if override.mode == "empty":
                return dns.resolver.NoAnswer()
            if override.mode == "timeout":
                return None
            if override.mode == "partial":
                return [a for a in true if a in override.keep]
            if override.mode == "wrong":
                return sorted({*true, *override.extra} - (set(true) - set(override.keep)), key=ipaddress.IPv4Address)
        return true


class FakeResolver:
    """Stands for ``dns.asyncresolver.Resolver``: answers from ``SimDNS`` after a short delay, or
    raises what dnspython raises (a timeout after the resolver's lifetime)."""

    def __init__(self, sim_dns: SimDNS, asker: str, lifetime: float):
        self.sim_dns = sim_dns
        self.asker = asker
        self.lifetime = lifetime

    async def resolve(self, name: str, rdtype: str = "A", search: bool = True):
        answer = self.sim_dns.answer_for(self.asker)
        if answer is None:
            await asyncio.sleep(self.lifetime)
            raise dns.exception.Timeout(timeout=self.lifetime)
        await asyncio.sleep(QUERY_DELAY)
        if isinstance(answer, Exception):
            raise answer
        return [SimpleNamespace(address=a) for a in answer]


def discovery_for(settings: Settings, sim_dns: SimDNS, asker: str) -> Discovery:
    """The node's real Discovery, asking the simulated DNS (see the module docstring)."""
    timeout = min(2.0, max(0.3, settings.heartbeat_interval))  # as cluster.runtime._dns_resolver
    discovery = Discovery(settings.service_name, dns_server=("10.0.2.254", 53), peers=(), timeout=timeout)
    discovery._resolver = FakeResolver(sim_dns, asker, timeout)  # the hook the sim needs: docs/simulation.md
    return discovery
