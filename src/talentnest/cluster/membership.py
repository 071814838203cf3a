"""Who the members are and whether they answer: discovery, heartbeats, suspicion, removal, the voter count.

A peer becomes a member when discovery lists it. It stops being one only when discovery drops it
**and** it is known to be gone: it said so (the signed leave of a graceful stop), its address refuses
connections (its process is not running), or it has not answered for ``FAILURE_TIMEOUT``. So no DNS
answer (NXDOMAIN, empty, partial, wrong, or none at all) removes a peer that still answers, and no
node can come to believe it is alone while its peers answer (docs/cluster.md, "Membership"). In
quorum mode the number of voters is ``CLUSTER_SIZE`` whatever discovery says.

Timing, from HEARTBEAT_INTERVAL ``h``: a probe waits ``0.8h``; a member unheard for ``3h`` (or whose
connection was refused) is *suspected*: it cannot lead and does not count as reachable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from talentnest.cluster.auth import MAX_SKEW_SECONDS
from talentnest.cluster.discovery import node_id_for
from talentnest.cluster.runtime import Resolver, Transport
from talentnest.cluster.transport import PeerRefused
from talentnest.cluster.types import PeerView, Role
from talentnest.cluster.wire import NodeInfo, decode
from talentnest.errors import InvalidInput, PeerUnreachable

log = logging.getLogger("talentnest.cluster")


@dataclass
class PeerState:
    """One other member as the heartbeats have shown it so far."""

    id: int
    address: str
    url: str
    first_seen: float
    listed: bool = True  # in the latest discovery answer
    last_ok: float | None = None  # monotonic time of the last good answer or heartbeat
    alive_since: float | None = None
    refused: bool = False  # the last attempt found nobody listening
    left: bool = False  # it said it is shutting down
    info: NodeInfo | None = None  # what it last said of itself
    refuses: str | None = None  # why it refuses this node's signed heartbeats (clock off, another key)
    skew: float | None = None  # its clock minus ours, in seconds, as its last heartbeat or refusal showed

    @property
    def term(self) -> int:
        return self.info.term if self.info else 0

    @property
    def last_lsn(self) -> int:
        return self.info.last_lsn if self.info else 0


class Owner(Protocol):
    """What membership tells the node that owns it (and asks of it).

    ``peer_said`` gets every heartbeat a peer sent or answered (``peer`` is None for a sender that is
    not a member yet; ``probe_sent_at`` is the send time of the probe it answers when this node was
    leading then, else None); ``peer_lost`` is called once
    when a peer stops answering or leaves; ``peer_back`` once when it answers again; ``members_changed``
    after the member set changed. None of them may raise.
    """

    def is_leader(self) -> bool: ...

    def self_info(self) -> NodeInfo: ...

    def peer_said(self, peer: PeerState | None, info: NodeInfo, probe_sent_at: float | None) -> None: ...

    def peer_lost(self, peer: PeerState, why: str, *, gone: bool) -> None: ...

    def peer_back(self, peer: PeerState) -> None: ...

    def members_changed(self) -> None: ...


class Membership:
    """The member list of one node and the health of each member."""

    scheme = "http"  # "https" when the nodes speak TLS (the node sets it)

    def __init__(
        self,
        *,
        resolver: Resolver,
        clock: Callable[[], float],
        wall: Callable[[], float],
        port: int,
        heartbeat: float,
        failure_timeout: float,
        cluster_size: int | None,
        owner: Owner,
    ):
        self.resolver = resolver
        self.clock = clock
        self.wall = wall
        self.port = port
        self.probe_timeout = 0.8 * heartbeat
        self.suspect_after = 3.0 * heartbeat
        self.failure_timeout = failure_timeout
        self.cluster_size = cluster_size
        self.owner = owner
        self.address: str | None = None
        self.transport: Transport | None = None
        self.peers: dict[str, PeerState] = {}
        # Members that stopped being members, kept FAILURE_TIMEOUT for whoever watches (metrics, status).
        self.departed: dict[str, tuple[PeerState, float]] = {}
        self.rounds = 0
        self.started_at = clock()

    def reset(self) -> None:
        self.rounds = 0
        self.started_at = self.clock()

    def remember(self, addresses: tuple[str, ...]) -> None:
        """At start: the members this node counted before it stopped count again (as not listed)
        until each is known gone, so that a restart cannot make it a cluster of one."""
        now = self.clock()
        for address in addresses:
            if address != self.address and address not in self.peers:
                self.peers[address] = PeerState(
                    id=node_id_for(address), address=address, url=f"http://{address}:{self.port}", first_seen=now, listed=False
                )

    # --- who is a member ---------------------------------------------------------------------

    def alive(self, peer: PeerState, now: float | None = None) -> bool:
        now = self.clock() if now is None else now
        return peer.last_ok is not None and not peer.refused and now - peer.last_ok < self.suspect_after

    def is_gone(self, peer: PeerState, now: float) -> bool:
        """Known not to be running: it left, it refuses connections, or it has been silent too long."""
        return peer.left or peer.refused or now - (peer.last_ok or peer.first_seen) >= self.failure_timeout

    def members(self) -> list[PeerState]:
        """The peers that count as voters (listed, or dropped by discovery but not known to be gone)."""
        return list(self.peers.values())

    def blind(self, now: float) -> bool:
        """No peer is known and no lookup has been answered since start (they all failed or timed out):
        an empty list then says nothing, and a node that led alone on it would be one of several
        leaders of one term (Swarm's DNS times out while its tasks start). Not for ever: once
        ``FAILURE_TIMEOUT`` has passed, the time after which a silent member is counted out too, the
        node may lead alone (docs/cluster.md, "Membership")."""
        return not self.peers and not self.resolver.answered and now - self.started_at < self.failure_timeout

    def voters(self) -> int:
        if self.cluster_size:
            return self.cluster_size
        return 1 + len(self.peers)

    def reachable(self, now: float | None = None) -> int:
        """This node plus the members that answer now."""
        now = self.clock() if now is None else now
        return 1 + sum(1 for p in self.peers.values() if self.alive(p, now))

    def by_id(self, node_id: int | None) -> PeerState | None:
        return next((p for p in self.peers.values() if p.id == node_id), None) if node_id is not None else None

    def by_url(self, url: str | None) -> PeerState | None:
        return next((p for p in self.peers.values() if p.url == url), None) if url else None

    def views(self, now: float) -> tuple[PeerView, ...]:
        views = []
        for p in self.peers.values():
            alive = self.alive(p, now)
            info = p.info
            views.append(
                PeerView(
                    id=p.id,
                    url=p.url,
                    alive=alive,
                    term=info.term if info else 0,
                    role=info.role if info else Role.FOLLOWER,
                    leader_id=info.leader_id if info else None,
                    last_lsn=info.last_lsn if info else 0,
                    last_term=info.last_term if info else 0,
                    ready=info.ready if info else False,
                    alive_for=(now - p.alive_since) if (p.alive_since is not None and alive) else 0.0,
                    eligible=info.eligible if info else True,
                )
            )
        return tuple(views)

    # --- discovery -----------------------------------------------------------------------------

    async def refresh(self) -> list[str]:
        """Ask discovery again; add what it lists, drop what it no longer lists and is gone."""
        listed = await self.resolver.resolve()
        listed_set = set(listed)
        now = self.clock()
        changed = False
        for address in listed:
            if address == self.address or address in self.peers:
                continue
            peer_id = node_id_for(address)
            self.peers[address] = PeerState(
                id=peer_id, address=address, url=f"{self.scheme}://{address}:{self.port}", first_seen=now
            )
            log.info("membership: node %d (%s) is listed", peer_id, address)
            changed = True
        for address, peer in list(self.peers.items()):
            was_listed, peer.listed = peer.listed, address in listed_set
            if was_listed and not peer.listed:
                log.info("membership: node %d (%s) is no longer listed by %s", peer.id, address, self.resolver.source)
            if not peer.listed and self.is_gone(peer, now):
                del self.peers[address]
                self.departed[address] = (peer, now)
                changed = True
                log.info("membership: node %d (%s) is no longer a member: %s", peer.id, address, self._why_gone(peer, now))
        for address, (_, since) in list(self.departed.items()):
            if address in self.peers or now - since > self.failure_timeout:
                del self.departed[address]
        if changed:
            self.owner.members_changed()
        return listed

    def _why_gone(self, peer: PeerState, now: float) -> str:
        if peer.left:
            return "it left"
        if peer.refused:
            return "nothing listens at its address"
        return f"unheard for {now - (peer.last_ok or peer.first_seen):.0f} s"

    # --- heartbeats ----------------------------------------------------------------------------

    async def probe_all(self) -> None:
        peers = list(self.peers.values())
        if peers:
            await asyncio.gather(*(self.probe(peer) for peer in peers))

    async def probe(self, peer: PeerState) -> None:
        """One heartbeat to ``peer``; what it answers is taken in as if it had sent it."""
        if self.transport is None:
            return
        sent = self.clock()
        leading = self.owner.is_leader()
        try:
            reply = await self.transport.call(
                "POST", peer.url, "/cluster/heartbeat", body=self.owner.self_info().to_bytes(), timeout=self.probe_timeout
            )
        except PeerRefused:
            self.refused(peer, "refused the connection")
            return
        except PeerUnreachable:
            if peer.alive_since is not None and not self.alive(peer):
                self._down(peer, "stopped answering", gone=False)
            return
        if reply.status == 401:
            self._refuses_signature(peer, reply.headers.get("X-Node-Time"))
            return
        if reply.status != 200:
            log.warning("membership: node %d answered the heartbeat with HTTP %d", peer.id, reply.status)
            return
        try:
            info = NodeInfo.parse(decode(reply.body))
        except InvalidInput as exc:
            log.warning("membership: node %d answered the heartbeat with a bad body: %s", peer.id, exc)
            return
        self.heard(peer, info, probe_sent_at=sent if leading else None)

    def heard(self, peer: PeerState | None, info: NodeInfo, *, probe_sent_at: float | None = None) -> None:
        """Take in what a peer said of itself (its heartbeat, or its answer to ours)."""
        peer = peer or self.by_url(info.url)
        if peer is not None:
            if info.leaving:
                self.refused(peer, "is shutting down", left=True)
                return
            now = self.clock()
            back = peer.alive_since is None or peer.refused
            if back:
                peer.alive_since = now
                log.info("membership: node %d (%s) answers", info.id, peer.address)
            peer.refused = peer.left = False
            peer.refuses = None
            peer.last_ok = now
            peer.id = info.id
            peer.info = info
            if info.wall_ms:
                peer.skew = info.wall_ms / 1000 - self.wall()
            if back:
                self.owner.peer_back(peer)
        elif info.leaving:
            return
        self.owner.peer_said(peer, info, probe_sent_at)

    def _refuses_signature(self, peer: PeerState, their_time: str | None) -> None:
        """A 401: our signature is stale to its clock, or made with another key. Say which, once."""
        with contextlib.suppress(ValueError):
            peer.skew = float(their_time) - self.wall() if their_time else peer.skew
        if peer.skew is not None and abs(peer.skew) > MAX_SKEW_SECONDS:
            why = f"its clock and this node's differ by {abs(peer.skew):.0f} s (signatures allow {MAX_SKEW_SECONDS} s)"
        else:
            why = "the cluster key differs (CLUSTER_SECRET, or JWT_SECRET when CLUSTER_SECRET is unset)"
        if peer.refuses != why:
            log.warning("membership: node %d (%s) refuses this node's signed heartbeats: %s", peer.id, peer.address, why)
        peer.refuses = why

    def refused(self, peer: PeerState, why: str, *, left: bool = False) -> None:
        """Nobody listens at the peer's address, or it said it is leaving: it is gone now."""
        first = not (peer.refused or peer.left)
        peer.refused = True
        peer.left = peer.left or left
        if first and peer.alive_since is not None:
            self._down(peer, why, gone=True)

    def _down(self, peer: PeerState, why: str, *, gone: bool) -> None:
        peer.alive_since = None
        log.info("membership: node %d (%s) is suspected: %s", peer.id, peer.address, why)
        self.owner.peer_lost(peer, why, gone=gone)
