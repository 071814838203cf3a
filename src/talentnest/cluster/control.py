"""The control loop (Patroni's ``ha.run_cycle``): reload the members, probe them, decide with the pure
``elect``, act, and say what was actually done. Long actions start beside the loop, one at a time."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from talentnest.cluster import handover, votes
from talentnest.cluster.election import elect
from talentnest.cluster.protocols import Core
from talentnest.cluster.types import Action, ClusterView, Cycle, Decision, Role
from talentnest.cluster.work import Job
from talentnest.errors import StorageFailure

log = logging.getLogger("talentnest.cluster")


async def run_loop(node: Core) -> None:
    """One cycle every heartbeat (sooner when woken), until the node stops; a failed cycle is logged."""
    while not node.stopping:
        started = node.clock.monotonic()
        try:
            cycle = await run_cycle(node)
            (log.info if cycle.action != Action.NONE else log.debug)("cluster: %s", cycle)
        except asyncio.CancelledError:
            raise
        except StorageFailure as exc:
            log.warning("cluster: membership cycle failed: %s; retrying next heartbeat", exc.message)
        except Exception:
            log.exception("cluster: membership cycle failed; retrying next heartbeat")
        now = node.clock.monotonic()
        delay = max(0.0, node.heartbeat - (now - started))
        if node.role == Role.LEADER:
            # Step down the moment the lease ends, not at the next heartbeat.
            delay = min(delay, max(0.0, node.lease_expiry() - now) + 0.001)
        wake = node.wake_event()
        wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), timeout=delay)


async def run_cycle(node: Core) -> Cycle:
    refusal = node.health.refusal()
    if refusal is not None:
        if node.role == Role.LEADER:
            return await act(node, elect(view(node)))
        return Cycle(Action.NONE, f"refusing to serve: {refusal}")
    if node.role != Role.LEADER and node.health.check_storage(node.db):  # a leader steps down first
        node.record_event("health", "can commit again")
    if node.role == Role.LEADER and not node.lease_valid():
        # The lease is over: stop claiming leadership before any slow probing.
        return await act(node, elect(view(node)))
    # Probes go to the members known now while discovery is asked again: a slow DNS answer must
    # not delay the heartbeats that keep the lease (new members are probed next round).
    await asyncio.gather(node.membership.refresh(), node.membership.probe_all())
    node.membership.rounds += 1
    now = node.clock.monotonic()
    periodic = now - node.loop.last_election >= node.settings.election_interval
    if periodic:
        node.loop.last_election = now
    cycle = await act(node, elect(view(node, periodic=periodic)))
    if periodic and node.gate.accepting_writes():
        for task in node.maintenance:
            try:
                task()
            except Exception as exc:  # maintenance is retried at the next periodic election
                log.warning("maintenance: %s", exc)
    return cycle


async def act(node: Core, decision: Decision) -> Cycle:
    """Carry out ``decision``, or say why not (a job already runs, a campaign just failed...)."""
    action, reason = decision.action, decision.reason
    if action == Action.STEP_DOWN:
        node.step_down(f"stepped down: {reason}")
        return Cycle(action, f"stepped down: {reason}")
    if action == Action.NONE:
        return Cycle(action, reason)
    if node.worker.busy:
        return Cycle(Action.NONE, f"{reason}; not yet: {node.worker.current} is running")
    if action == Action.CAMPAIGN:
        now = node.clock.monotonic()
        if node.loop.last_campaign is not None and now - node.loop.last_campaign < node.heartbeat:
            return Cycle(Action.NONE, f"{reason}; not yet: stood less than a heartbeat ago")
        node.loop.last_campaign = now
        node.run_job(Job.CAMPAIGN, votes.campaign(node, handover_from=None))
        return Cycle(action, reason)
    peer = node.membership.by_id(decision.target)
    if peer is None:
        return Cycle(Action.NONE, f"{reason}; but node {decision.target} is no longer a member")
    if action == Action.CATCH_UP and node.replication is not None:
        node.run_job(Job.CATCH_UP, node.replication.catch_up(peer.url, peer.id, reason))
    elif action == Action.HANDOVER:
        node.run_job(Job.HANDOVER, handover.hand_over(node, peer))
    return Cycle(action, reason)


def view(node: Core, *, periodic: bool = False) -> ClusterView:
    """Everything ``elect`` needs, read from the node now."""
    now = node.clock.monotonic()
    return ClusterView(
        self_id=node.node_id,
        role=node.role,
        term=node.term,
        leader_id=node.leader_id,
        last_lsn=node.db.last_lsn,
        last_term=node.db.last_term,
        peers=node.membership.views(now),
        voters=node.voters(),
        leader_alive=node.leader_alive(now),
        lease_valid=node.lease_valid(now),
        syncing=node.worker.syncing,
        eligible=node.may_lead(),
        not_eligible_because="; ".join(node.health.reasons()),
        drained=node.health.only_drained,
        discovering=node.membership.rounds < 2 and bool(node.membership.peers),
        blind=node.membership.blind(now),
        periodic=periodic,
        handover_settle=2 * node.heartbeat,
    )
