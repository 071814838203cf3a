"""The election rule, decided from views alone (no sockets, no clock)."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from talentnest.cluster.election import HANDOVER_LAG, elect
from talentnest.cluster.types import Action, ClusterView, PeerView, Role


def peer(id: int, *, alive: bool = True, lsn: int = 10, term: int = 1, ready: bool = True, alive_for: float = 60.0) -> PeerView:
    return PeerView(
        id=id,
        url=f"http://10.0.{id // 256}.{id % 256}:3000",
        alive=alive,
        term=term,
        last_lsn=lsn,
        last_term=term,
        ready=ready,
        alive_for=alive_for,
    )


def make_view(
    self_id: int = 513, *, role: Role = Role.FOLLOWER, peers=(), voters: int | None = None, lsn: int = 10, term: int = 1, **kw
) -> ClusterView:
    peers = tuple(peers)
    return ClusterView(
        self_id=self_id,
        role=role,
        term=term,
        leader_id=kw.pop("leader_id", None),
        last_lsn=lsn,
        last_term=term,
        peers=peers,
        voters=voters if voters is not None else 1 + len(peers),
        **kw,
    )


def make_view_with_leader(**kw) -> ClusterView:
    return make_view(515, role=Role.LEADER, leader_id=515, lease_valid=True, peers=[peer(513), peer(514)], **kw)


# --- as leader ----------------------------------------------------------------------------------


def test_a_leader_with_its_lease_keeps_leading():
    decision = elect(make_view_with_leader())
    assert decision.action == Action.NONE
    assert "leading term 1 with 3 of 3" in decision.reason


def test_a_leader_whose_lease_lapsed_steps_down_saying_why():
    view = replace(make_view_with_leader(), lease_valid=False, peers=(peer(513, alive=False), peer(514, alive=False)))
    decision = elect(view)
    assert decision.action == Action.STEP_DOWN
    assert "reached 1 of 3" in decision.reason and "needs 2" in decision.reason


def test_a_leader_hands_over_to_a_caught_up_higher_id_at_the_periodic_election():
    view = make_view(514, role=Role.LEADER, leader_id=514, lease_valid=True, periodic=True, peers=[peer(513), peer(515)])
    decision = elect(view)
    assert decision.action == Action.HANDOVER and decision.target == 515


def test_a_higher_id_a_few_entries_behind_under_steady_writes_still_gets_the_handover():
    # A follower's report trails a busy leader; hand_over ships the rest with writes paused.
    lsn = 10 + HANDOVER_LAG
    view = make_view(514, role=Role.LEADER, leader_id=514, lease_valid=True, periodic=True, lsn=lsn, peers=[peer(515, lsn=10)])
    assert elect(view).target == 515


def test_no_handover_outside_the_periodic_election_or_to_a_peer_not_ready_behind_or_settling():
    base = dict(role=Role.LEADER, leader_id=514, lease_valid=True)
    assert elect(make_view(514, periodic=False, peers=[peer(515)], **base)).action == Action.NONE
    assert elect(make_view(514, periodic=True, peers=[peer(515, ready=False)], **base)).action == Action.NONE
    far_behind = 10 - HANDOVER_LAG - 1
    assert elect(make_view(514, periodic=True, lsn=10, peers=[peer(515, lsn=far_behind)], **base)).action == Action.NONE
    assert elect(make_view(514, periodic=True, peers=[peer(515, lsn=12)], **base)).action == Action.NONE, "ahead: another history"
    assert elect(make_view(514, periodic=True, term=2, peers=[peer(515, term=1)], **base)).action == Action.NONE, "older term"
    assert elect(make_view(514, periodic=True, peers=[peer(515, alive_for=0.5)], **base)).action == Action.NONE
    assert elect(make_view(514, periodic=True, peers=[peer(515, alive=False)], **base)).action == Action.NONE


# --- as follower --------------------------------------------------------------------------------


def test_a_follower_of_a_live_leader_does_nothing():
    view = make_view(513, leader_id=515, leader_alive=True, peers=[peer(514), peer(515)])
    assert elect(view).action == Action.NONE


def test_nothing_happens_while_discovering_or_syncing():
    assert elect(make_view(515, discovering=True, peers=[peer(513)])).action == Action.NONE
    assert elect(make_view(515, syncing=True, peers=[peer(513)])).action == Action.NONE


def test_the_highest_live_id_with_a_majority_campaigns_when_the_leader_is_lost():
    view = make_view(514, leader_id=515, leader_alive=False, peers=[peer(513), peer(515, alive=False)])
    decision = elect(view)
    assert decision.action == Action.CAMPAIGN
    assert "2 of 3" in decision.reason and "term 2" in decision.reason


def test_a_lower_id_waits_for_the_highest_live_one():
    view = make_view(513, peers=[peer(514), peer(515, alive=False)])
    decision = elect(view)
    assert decision.action == Action.NONE and "node 514" in decision.reason


def test_a_node_cut_off_from_its_peers_never_stands():
    view = make_view(515, peers=[peer(513, alive=False), peer(514, alive=False)])
    decision = elect(view)
    assert decision.action == Action.NONE
    assert "reaches 1 of 3" in decision.reason and "will not lead" in decision.reason


def test_a_node_alone_in_dns_leads_itself():
    assert elect(make_view(513, peers=[])).action == Action.CAMPAIGN


def test_quorum_mode_counts_the_configured_cluster_size_not_the_listing():
    view = make_view(515, peers=[peer(514)], voters=5)
    assert elect(view).action == Action.NONE


def test_dead_higher_ids_do_not_count():
    view = make_view(514, peers=[peer(513), peer(516, alive=False)], voters=3)
    assert elect(view).action == Action.CAMPAIGN


def test_no_one_stands_while_a_leader_was_heard_from_even_in_a_later_term_without_a_leader_yet():
    # Leader stickiness: adopting a later term does not make the old leader's lease any shorter.
    view = make_view(515, peers=[peer(513), peer(514)], leader_id=None, leader_alive=True, term=4)
    decision = elect(view)
    assert decision.action == Action.NONE and "heard from" in decision.reason


def test_the_winner_catches_up_from_the_most_advanced_peer_before_standing():
    view = make_view(515, lsn=10, peers=[peer(513, lsn=12), peer(514, lsn=11)])
    decision = elect(view)
    assert decision.action == Action.CATCH_UP and decision.target == 513
    assert "LSN 12" in decision.reason


def test_a_newer_term_beats_a_longer_log_when_choosing_whom_to_catch_up_from():
    view = make_view(515, lsn=10, term=2, peers=[peer(513, lsn=30, term=2), peer(514, lsn=12, term=3)])
    decision = elect(view)
    assert decision.action == Action.CATCH_UP and decision.target == 514


# --- properties over random views ---------------------------------------------------------------

peers_strategy = st.lists(
    st.builds(
        peer,
        st.integers(1, 600),
        alive=st.booleans(),
        lsn=st.integers(0, 20),
        term=st.integers(0, 3),
        ready=st.booleans(),
        alive_for=st.floats(0, 30),
    ),
    max_size=6,
    unique_by=lambda p: p.id,
)


@given(
    self_id=st.integers(601, 700) | st.integers(1, 600),
    peers=peers_strategy,
    lsn=st.integers(0, 20),
    term=st.integers(0, 3),
    extra_voters=st.integers(0, 3),
    leader_alive=st.booleans(),
)
def test_no_decision_ever_breaks_the_rules(self_id, peers, lsn, term, extra_voters, leader_alive):
    peers = [p for p in peers if p.id != self_id]
    view = make_view(
        self_id,
        peers=peers,
        lsn=lsn,
        term=term,
        voters=1 + len(peers) + extra_voters,
        leader_id=(peers[0].id if peers else None),
        leader_alive=leader_alive and bool(peers),
    )
    decision = elect(view)
    live = [p for p in peers if p.alive]
    if decision.action in (Action.CAMPAIGN, Action.CATCH_UP):
        assert view.reachable > view.voters // 2, "stood without a majority"
        assert all(p.id < self_id for p in live), "stood with a higher live ID around"
        assert not view.leader_alive
    if decision.action == Action.CAMPAIGN:
        assert all(p.log_position <= view.log_position for p in peers if p.alive), "stood with stale data"
    if decision.action == Action.CATCH_UP:
        source = next(p for p in peers if p.id == decision.target)
        assert source.alive and source.log_position > view.log_position
    assert decision.action not in (Action.STEP_DOWN, Action.HANDOVER)
