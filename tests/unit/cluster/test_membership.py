"""Membership cannot shrink by accident: a member leaves only when discovery drops it and it is known gone."""

from __future__ import annotations

from tests.unit.cluster.fakes import info, make_rig, reply, started

from talentnest.cluster.transport import PeerRefused
from talentnest.errors import PeerUnreachable

A, B, C = "10.0.2.1", "10.0.2.2", "10.0.2.3"


async def cluster_of_three(tmp_path, **settings):
    """Node 515 at C with members A (513) and B (514), both answering heartbeats."""
    rig = await started(make_rig(tmp_path, address=C, peers=[A, B], **settings))
    rig.transport.handler = lambda call: reply(info(512 + int(call.url.split(".")[-1].split(":")[0]), call.url[7:-5]))
    await rig.node.membership.probe_all()
    return rig


async def test_an_empty_or_failed_dns_answer_removes_nobody_who_answers(tmp_path):
    rig = await cluster_of_three(tmp_path)
    m = rig.node.membership
    for answer in ([], [C], None, ["10.9.9.9"]):  # NXDOMAIN, only itself, a failed lookup, a wrong answer
        rig.resolver.answer = answer
        for _ in range(3):
            rig.clock.advance(10)
            await m.probe_all()
            await m.refresh()
        assert {p.address for p in m.members()} >= {A, B}, f"DNS answer {answer} removed live members"
        assert m.voters() >= 3
        assert m.reachable() >= 3


async def test_a_member_dropped_by_dns_and_refusing_connections_leaves_at_once(tmp_path):
    rig = await cluster_of_three(tmp_path)
    m = rig.node.membership
    rig.transport.handler = lambda call: PeerRefused("refused") if B in call.url else reply(info(513, A))
    rig.resolver.answer = [A, C]
    await m.probe_all()
    await m.refresh()
    assert {p.address for p in m.members()} == {A}
    assert m.voters() == 2


async def test_a_member_still_listed_stays_a_voter_while_refusing(tmp_path):
    rig = await cluster_of_three(tmp_path)
    m = rig.node.membership
    rig.transport.handler = lambda call: PeerRefused("refused") if B in call.url else reply(info(513, A))
    await m.probe_all()
    await m.refresh()
    assert m.voters() == 3 and m.reachable() == 2


async def test_a_silent_member_dropped_by_dns_leaves_after_the_failure_timeout_only(tmp_path):
    rig = await cluster_of_three(tmp_path, failure_timeout=30.0)
    m = rig.node.membership
    rig.transport.handler = lambda call: PeerUnreachable("timeout") if B in call.url else reply(info(513, A))
    rig.resolver.answer = [A, C]
    rig.clock.advance(29)
    await m.probe_all()
    await m.refresh()
    assert B in m.peers, "removed before FAILURE_TIMEOUT"
    assert not m.alive(m.peers[B]), "suspected after 3 missed beats"
    rig.clock.advance(2)
    await m.refresh()
    assert B not in m.peers


async def test_a_signed_leave_makes_the_member_gone_at_once(tmp_path):
    rig = await cluster_of_three(tmp_path)
    m = rig.node.membership
    from talentnest.cluster.wire import NodeInfo

    m.heard(None, NodeInfo.parse(info(514, B, leaving=True)))
    assert not m.alive(m.peers[B])
    rig.resolver.answer = [A, C]
    await m.refresh()
    assert B not in m.peers


async def test_quorum_mode_counts_cluster_size_whatever_dns_says(tmp_path):
    rig = await cluster_of_three(tmp_path, replication_mode="quorum", cluster_size=5)
    assert rig.node.membership.voters() == 5
    rig.resolver.answer = []
    await rig.node.membership.refresh()
    assert rig.node.membership.voters() == 5


async def test_a_member_that_answers_again_is_reported_back_once(tmp_path):
    rig = await cluster_of_three(tmp_path)
    m = rig.node.membership
    back: list[str] = []
    rig.node.peer_back = lambda peer: back.append(peer.address)
    rig.transport.handler = lambda call: PeerRefused("refused")
    await m.probe_all()
    rig.transport.handler = lambda call: reply(info(514, B)) if B in call.url else reply(info(513, A))
    await m.probe_all()
    await m.probe_all()
    assert sorted(back) == [A, B]
