"""Vote rounds on the wire: standing for a term (asking every member), and answering a candidate.

The rules are pure (``election.grant_vote`` and ``election.tally``); this module does the I/O around
them and hands the node each outcome (``begin_candidacy``, ``end_candidacy``, ``record_vote``): it
never sets the node's role or term itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace

from talentnest.cluster.election import Refusal, Tally, Voter, grant_vote, tally
from talentnest.cluster.membership import PeerState
from talentnest.cluster.protocols import Core
from talentnest.cluster.runtime import Transport
from talentnest.cluster.wire import VoteReply, VoteRequest, decode
from talentnest.errors import InvalidInput, PeerUnreachable

log = logging.getLogger("talentnest.cluster")


@dataclass(frozen=True)
class Round:
    """One vote round's result: the tally, the peers that granted, and when the request left."""

    tally: Tally
    granted: tuple[PeerState, ...]
    sent_at: float


async def ask_for_votes(
    transport: Transport,
    peers: Sequence[PeerState],
    request: VoteRequest,
    *,
    voters: int,
    current_term: int,
    timeout: float,
    sent_at: float,
) -> Round:
    """Ask every peer at once; stop waiting once a majority has granted or one names a later term (a
    hung peer must not hold up the election). Answers not in by then count as none."""
    needed = voters // 2  # grants needed besides the candidate's own
    answers: list[VoteReply | None] = [None] * len(peers)
    body = request.to_bytes()

    async def ask(index: int) -> tuple[int, VoteReply | None]:
        return index, await _ask(transport, peers[index], body, timeout)

    tasks = [asyncio.ensure_future(ask(i)) for i in range(len(peers))]
    granted = 0
    try:
        for next_done in asyncio.as_completed(tasks):
            index, answer = await next_done
            answers[index] = answer
            if answer is None:
                continue
            granted += answer.granted
            if granted >= needed or answer.term > request.term:
                break
    finally:
        for task in tasks:
            task.cancel()
    result = tally([(p.id, a) for p, a in zip(peers, answers, strict=True)], voters=voters, term=current_term)
    return Round(result, tuple(peers[i] for i in result.granted), sent_at)


async def _ask(transport: Transport, peer: PeerState, body: bytes, timeout: float) -> VoteReply | None:
    try:
        reply = await transport.call("POST", peer.url, "/cluster/vote", body=body, timeout=timeout)
        if reply.status != 200:
            return None
        return VoteReply.parse(decode(reply.body))
    except PeerUnreachable:
        return None
    except InvalidInput as exc:
        log.warning("election: node %d answered a vote request with a bad body: %s", peer.id, exc)
        return None


def describe_loss(candidate: int, term: int, result: Tally, voters: int, *, pre_vote: bool) -> str:
    refusals = "; ".join(result.refusals)
    outcome = "would lose the pre-vote" if pre_vote else "lost"
    return f"term {term}: node {candidate} {outcome} with {result.votes} of {voters} votes" + (
        f" ({refusals})" if refusals else ""
    )


async def campaign(node: Core, *, handover_from: int | None) -> bool:
    """Stand for the next term; lead if a majority of the voters grants its vote. Whether it leads.

    A pre-vote round first asks whether the peers would vote, without changing any term: a node that
    cannot win never raises the term, so it cannot disrupt a healthy leader.
    """
    peers = node.membership.members()
    timeout = max(node.membership.probe_timeout, 1.0)
    request = VoteRequest(node.term + 1, node.node_id, node.url, node.db.last_lsn, node.db.last_term, handover_from)
    pre = await ask_for_votes(
        node.transport, peers, replace(request, pre_vote=True), voters=node.voters(), current_term=node.term,
        timeout=timeout, sent_at=node.clock.monotonic(),
    )  # fmt: skip
    if pre.tally.higher_term is not None:
        node.adopt_term(pre.tally.higher_term, "a peer is in a later term")
        return False
    if not pre.tally.won:
        log.info("election: %s", describe_loss(node.node_id, request.term, pre.tally, node.voters(), pre_vote=True))
        return False
    if node.is_leader() or (node.leader_alive() and handover_from is None):
        return False
    term = node.begin_candidacy()
    sent = node.clock.monotonic()
    real = await ask_for_votes(
        node.transport, peers, replace(request, term=term), voters=node.voters(), current_term=term,
        timeout=timeout, sent_at=sent,
    )  # fmt: skip
    if real.tally.higher_term is not None:
        node.adopt_term(real.tally.higher_term, "a peer is in a later term")
    elif not real.tally.won:
        log.info("election: %s", describe_loss(node.node_id, term, real.tally, node.voters(), pre_vote=False))
    votes = real.tally.votes if real.tally.won else 0
    return node.end_candidacy(term, [p.address for p in real.granted], sent, votes)


def voter(node: Core) -> Voter:
    """What the vote rules need of this node, now."""
    now = node.clock.monotonic()
    alive = node.leader_alive(now)
    return Voter(
        node_id=node.node_id,
        term=node.term,
        voted_for=node.state.current.voted_for,
        role=node.role,
        lease_valid=node.lease_valid(now),
        leader_id=node.heard_from if alive else node.leader_id,
        leader_alive=alive,
        stopping=node.stopping,
        last_term=node.db.last_term,
        last_lsn=node.db.last_lsn,
        may_vote=node.health.may_vote,
    )


async def answer_vote(node: Core, request: VoteRequest) -> VoteReply:
    """Grant or refuse a vote (or a pre-vote, which changes nothing); a granted vote is persisted with
    its term before the answer leaves (a failure to persist raises: no answer, no vote)."""
    verdict = grant_vote(request, voter(node))
    if verdict.refusal == Refusal.LEADER_ALIVE:
        # Before refusing, look again: a dead leader is usually a refused connection.
        leader = node.membership.by_id(node.heard_from)
        if leader is not None:
            await node.membership.probe(leader)
            verdict = grant_vote(request, voter(node))
    if not verdict.granted or request.pre_vote:
        return VoteReply(node.term, verdict.granted, verdict.reason)
    node.adopt_term(request.term, f"node {request.candidate_id} stands for term {request.term}")
    node.record_vote(request.candidate_id)
    return VoteReply(node.term, True, verdict.reason)
