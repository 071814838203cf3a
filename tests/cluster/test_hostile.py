"""Issue 15's hostile conditions, each played for real on a 3-node cluster as an operator would meet it.

A DNS that answers NXDOMAIN (or nothing, or something wrong), two nodes with one ID, a peer's absurd
numbers, a signup lost with a cut-off leader, full disks (a tmpfs as DATA_DIR), clocks off by 25-40 s
(libfaketime), a database damaged while its node was stopped, two processes on one DATA_DIR, a
follower cut off from its leader; and two variants found on the way: two leaders made in one term
on purpose (async mode's documented hole), and a node restarted while the DNS answers empty (found
by ``benchmarks/nemesis.py``). Each test reads as the case: what is done, then what must hold.
Writers post numbered contents with Idempotency-Keys through every node meanwhile (``load.py``), and
the invariants of ``invariants.py`` are checked at the end.
"""

from __future__ import annotations

import hashlib
import json
import random
import time

import pytest

from tests.cluster import invariants
from tests.cluster.harness import SIGNATURE_HEADER, sign, wait_until
from tests.cluster.hazards import damage_file
from tests.cluster.load import busy, target, wait_for_convergence, watch
from tests.cluster.workload import archived_text, leader_claims, signup_body, who_is

FAST = {"HEARTBEAT_INTERVAL": "0.5", "FAILURE_TIMEOUT": "5", "ELECTION_INTERVAL": "2"}
HEARTBEAT = 0.5
MIB = 1 << 20
pytestmark = [pytest.mark.cluster, pytest.mark.slow]
needs_firewall = pytest.mark.usefixtures("firewall_available")


def signed(node, method: str, path: str, body: bytes = b"", timeout: float = 5.0):
    """A node-to-node request, correctly signed with the cluster's key (as a buggy peer would send it)."""
    headers = {SIGNATURE_HEADER: sign(node.cluster.cluster_key, method, path, body), "Content-Type": "application/json"}
    response = node.cluster.http.request(method, f"{node.url}{path}", content=body, headers=headers, timeout=timeout)
    return response


def signed_reply(node, method: str, path: str):
    headers = {SIGNATURE_HEADER: sign(node.cluster.cluster_key, method, path)}
    return node.request(method, path, headers=headers)


def terms(cluster) -> dict[str, int]:
    return {name: status["term"] for name, status in cluster.statuses().items() if status}


def roles(cluster) -> dict[str, str]:
    return {name: status["current_role"] for name, status in cluster.statuses().items() if status}


def post(node, token: str, content: str, key: str | None = None, timeout: float = 20.0):
    headers = {"Idempotency-Key": key} if key else {}
    return node.request("POST", "/api/posts", json={"content": content}, token=token, headers=headers, timeout=timeout)


def error_code(reply) -> str | None:
    body = reply.body if isinstance(reply.body, dict) else {}
    return (body.get("error") or {}).get("code")


# --- case 1: the DNS answers NXDOMAIN, or nothing, or something wrong ------------------------------------


def test_the_dns_answering_nxdomain_for_16_s_then_empty_partial_wrong_failing_and_nothing_while_clients_write_loses_nothing(
    make_cluster,
):
    """No second leader, no acknowledged write lost, every node the same data at the same LSN."""
    cluster = make_cluster(3, env={**FAST, "FAILURE_TIMEOUT": "2"})  # each odd answer outlasts it
    leader = cluster.wait_for_leader()
    others = [node for node in cluster.nodes if node is not leader]
    subnet = leader.address.rsplit(".", 1)[0]
    answers = [
        ("nxdomain", (), 16.0),  # a resolver restart, a Kubernetes DNS hiccup
        ("empty", (), 3.0),
        ("only", (others[0].address,), 3.0),  # partial: one follower, neither the leader nor the other
        ("only", (f"{subnet}.200", f"{subnet}.201"), 3.0),  # wrong: addresses where no node runs
        ("servfail", (), 3.0),
        ("silent", (), 3.0),  # no answer at all: every lookup times out
    ]
    with busy(cluster) as load:
        for kind, addresses, seconds in answers:
            cluster.dns(kind, addresses)

            def same_leader(kind=kind, addresses=addresses) -> None:
                leading = [name for name, role in roles(cluster).items() if role == "leader"]
                assert leading in ([], [leader.name]), f"DNS answering {kind} {addresses}: leaders {leading}\n{cluster.report()}"

            watch(seconds, same_leader)
        cluster.dns(None)
        load.wait_for_progress()
        load.check()
    for node in cluster.nodes:
        assert "elected with 1 of" not in node.logs(), f"{node.name} thought it was alone\n{cluster.report()}"


@pytest.mark.parametrize("failure", ["silent", "servfail"])
def test_new_nodes_started_while_every_dns_lookup_fails_do_not_each_lead_alone(make_cluster, failure):
    """Found by the Swarm test: Docker's DNS timed out for 10 s while the stack's three tasks started,
    and each new node took the empty list for "alone" and led term 1. A lookup that fails says nothing
    of who the members are: they wait for an answer (FAILURE_TIMEOUT at most, longer than this)."""
    cluster = make_cluster(0, env={**FAST, "FAILURE_TIMEOUT": "30"}, wait=False)
    cluster.dns(failure)
    nodes = [cluster.add_node(wait=False) for _ in range(3)]
    wait_until(lambda: all(node.try_status() for node in nodes), timeout=30, what="the three nodes to answer")

    def nobody_leads() -> None:
        leading = [name for name, role in roles(cluster).items() if role == "leader"]
        assert leading == [], f"DNS answering {failure}: {leading} lead\n{cluster.report()}"

    watch(3, nobody_leads)
    cluster.dns(None)
    cluster.wait_for_leader(expect=nodes[-1], timeout=30)
    claims = leader_claims({node.name: node.logs() for node in nodes})
    assert not invariants.one_leader_per_term(claims), f"{claims}\n{cluster.report()}"
    for node in nodes:
        assert "elected with 1 of" not in node.logs(), f"{node.name} thought it was alone\n{cluster.report()}"


def test_a_node_restarted_while_the_dns_answers_empty_does_not_lead_alone_and_the_majoritys_writes_survive(make_cluster):
    """Found by the nemesis (async, seed 16): a node that starts while discovery lists nobody led a
    cluster of one, and its later term then beat the majority's writes, which were archived."""
    cluster = make_cluster(3, env=FAST)
    restarted = cluster.wait_for_leader()
    restarted.stop()
    majority = cluster.wait_for_leader(exclude=[restarted], timeout=15)
    token = cluster.signup(majority, username="majoritywriter").body["token"]
    cluster.dns("empty")  # a DNS hiccup while it comes back
    restarted.start(wait=False)
    written = [post(majority, token, f"held by the majority {n}").status for n in range(5)]
    assert written == [201] * 5, written

    def not_alone() -> None:
        status = restarted.try_status() or {}
        assert status.get("current_role") != "leader", f"{restarted.name} leads alone\n{cluster.report()}"

    watch(4, not_alone)
    cluster.dns(None)
    cluster.wait_for_leader(timeout=30)
    wait_for_convergence(cluster)
    leader = cluster.wait_for_leader()
    contents = {p["content"] for p in leader.request("GET", "/api/posts?author=majoritywriter&limit=100").body["items"]}
    assert contents == {f"held by the majority {n}" for n in range(5)}, f"{contents}\n{cluster.report()}"
    assert "elected with 1 of 1" not in restarted.logs()


# --- case 2: two nodes with one NODE_ID ------------------------------------------------------------------


def test_a_second_node_started_with_the_leaders_node_id_refuses_to_serve_naming_the_id_and_both_addresses(make_cluster):
    cluster = make_cluster(3, env=FAST)
    leader = cluster.wait_for_leader(expect=cluster.node("backend-3"))  # the highest ID: no handover to come
    term = leader.status()["term"]
    with busy(cluster) as load:
        twin = cluster.add_node(wait=False, env={"NODE_ID": str(leader.node_id)})  # a copy-pasted manifest

        def clash_named() -> bool:
            return any(
                str(leader.node_id) in line and leader.address in line and twin.address in line
                for node in (twin, leader)
                for line in node.logs().splitlines()
            )

        what = f"a log line naming ID {leader.node_id}, {leader.address} and {twin.address}"
        wait_until(clash_named, timeout=15, what=what, report=cluster.report)

        def twin_never_serves() -> None:
            if not twin.is_running:
                return
            assert not twin.is_ready(), f"{twin.name} (a second ID {leader.node_id}) reports ready\n{cluster.report()}"
            status = twin.try_status()
            assert status is None or status["current_role"] != "leader", f"{twin.name} leads\n{cluster.report()}"
            assert roles(cluster).get(leader.name) == "leader", f"{leader.name} lost the lead to its twin\n{cluster.report()}"

        watch(4, twin_never_serves)
        load.wait_for_progress()
        if twin.is_running:
            twin.stop()
        load.check()
    assert leader.status()["term"] - term <= 1, f"terms went from {term} to {leader.status()['term']}: the twins took turns"


# --- case 3: a peer's absurd numbers --------------------------------------------------------------------


HUGE = 99999999999999999999999


def absurd_requests(cluster) -> list[tuple[str, str, bytes]]:
    """(method, path, body) of correctly signed requests carrying numbers no node may take."""
    stranger = {"url": f"http://{cluster.nodes[0].address.rsplit('.', 1)[0]}.99:3000", "role": "follower"}
    beat = {"id": 99, **stranger, "term": HUGE, "leader_id": None, "last_lsn": 0, "last_term": 0}
    vote = {"term": HUGE, "candidate_id": 99, "candidate_url": stranger["url"], "last_lsn": HUGE, "last_term": HUGE}
    batch = {
        "leader_id": 99,
        "term": HUGE,
        "leader_url": stranger["url"],
        "prev_lsn": 0,
        "prev_term": 0,
        "leader_last_lsn": 0,
        "leader_last_term": 0,
        "leader_first_lsn": 0,
        "history": None,
        "entries": [],
    }
    return [
        ("POST", "/cluster/heartbeat", json.dumps(beat).encode()),
        ("POST", "/cluster/heartbeat", json.dumps({**beat, "term": 1}).replace('"id": 99', '"id": 1e400').encode()),
        ("POST", "/cluster/heartbeat", json.dumps({**beat, "term": 2.5}).encode()),
        ("POST", "/cluster/vote", json.dumps(vote).encode()),
        ("POST", "/cluster/replicate", json.dumps(batch).encode()),
        ("POST", "/cluster/leave", json.dumps(beat).encode()),
        ("GET", "/cluster/log?limit=-1", b""),
        ("GET", f"/cluster/log?after={HUGE}", b""),
    ]


def test_signed_heartbeats_votes_and_batches_with_absurd_numbers_are_400_and_change_no_term_even_after_restarts(
    make_cluster,
):
    cluster = make_cluster(3, env=FAST)
    leader = cluster.wait_for_leader()
    before = terms(cluster)
    for node in cluster.nodes:
        for method, path, body in absurd_requests(cluster):
            response = signed(node, method, path, body)
            sent = f"{node.name} {method} {path} {body[:80]!r}"
            assert response.status_code == 400, f"{sent}: {response.status_code} {response.text[:200]}"
            assert set(response.json()["error"]) >= {"code", "message"}
    assert terms(cluster) == before, f"terms moved: {before} -> {terms(cluster)}"
    token = cluster.signup(username="afterabsurd").body["token"]
    assert post(cluster.node("backend-1"), token, "still writable").status == 201
    follower = cluster.node("backend-1")
    follower.stop(graceful=False)
    leader.stop(graceful=False)
    follower.start(wait=False)
    leader.start(wait=False)
    cluster.wait_for_leader(timeout=30)
    assert max(terms(cluster).values()) < 1000, f"a node adopted an absurd term: {terms(cluster)}"
    assert post(follower, token, "writable after restarts").status == 201

    # The top of the range (2**63 - 1) is in range, but the term after it is not: whether refused or
    # taken, it must not leave the cluster unable to elect (the next variant a bound can walk around).
    stranger = f"http://{follower.address.rsplit('.', 1)[0]}.99:3000"
    beat = {"id": 99, "url": stranger, "role": "follower", "term": 2**63 - 1, "leader_id": None, "last_lsn": 0, "last_term": 0}
    answered = signed(follower, "POST", "/cluster/heartbeat", json.dumps(beat).encode()).status_code
    leader = cluster.wait_for_leader(timeout=20)
    leader.stop(graceful=False)  # the next election needs a term after the current one
    cluster.wait_for_leader(exclude=[leader], timeout=20)
    reply = post(follower, token, "after a heartbeat at the top of the term range")
    assert reply.status == 201, f"heartbeat answered {answered}; then a write: {reply.status} {reply.body}\n{cluster.report()}"

    # The same from a member (a heartbeat from a stranger moves no term) at the top of the range a
    # node takes (2**62): refused too, or the next election's term would be out of range for ever.
    leader.start()
    cluster.wait_for_leader(timeout=20)
    member = next(node for node in cluster.nodes if node is not follower)
    beat = {**beat, "id": member.node_id, "url": member.url, "term": 2**62}
    answered = signed(follower, "POST", "/cluster/heartbeat", json.dumps(beat).encode()).status_code
    assert answered == 400 and max(terms(cluster).values()) < 1000, f"{answered}, terms {terms(cluster)}"
    leader = cluster.wait_for_leader(timeout=20)
    leader.stop(graceful=False)
    cluster.wait_for_leader(exclude=[leader], timeout=20)
    reply = post(follower, token, "after a member's heartbeat at the top of the term range")
    assert reply.status == 201, f"heartbeat answered {answered}; then a write: {reply.status} {reply.body}\n{cluster.report()}"


# --- case 9: a follower cut off from its leader fails fast -----------------------------------------------


@needs_firewall
def test_a_write_to_a_follower_cut_off_from_its_leader_is_answered_503_no_leader_within_about_3_heartbeats(make_cluster):
    cluster = make_cluster(3, env=FAST)
    leader = cluster.wait_for_leader()
    follower = cluster.node("backend-1")
    token = cluster.signup(follower, username="cutoffwriter").body["token"]
    follower.partition()
    started = time.monotonic()
    first = post(follower, token, "sent at the cut", key="at-the-cut")
    first_took = time.monotonic() - started
    assert first.status == 503 and "retry-after" in first.headers, f"{first.status} {first.body}"
    assert error_code(first) in ("no_leader", "leader_unreachable", "outcome_unknown"), first.body
    assert first_took < 3 * HEARTBEAT + 2.0, f"answered after {first_took:.1f} s, not within about 3 heartbeats"
    wait_until(lambda: follower.status()["leader_id"] is None, timeout=5, what="the follower to suspect its leader")
    started = time.monotonic()
    second = post(follower, token, "sent once the leader is suspected", key="after-suspicion")
    second_took = time.monotonic() - started
    assert second.status == 503 and error_code(second) == "no_leader" and "retry-after" in second.headers, second.body
    assert second_took < 1.0, f"a write for a suspected leader waited {second_took:.1f} s instead of being refused at once"
    follower.heal()
    cluster.wait_for_leader(timeout=20)
    for key, content in (("at-the-cut", "sent at the cut"), ("after-suspicion", "sent once the leader is suspected")):
        assert post(follower, token, content, key=key).status == 201
    contents = [p["content"] for p in leader.request("GET", "/api/posts?author=cutoffwriter&limit=100").body["items"]]
    assert sorted(contents) == sorted(["sent at the cut", "sent once the leader is suspected"]), contents


# --- histories that cannot diverge unseen: two leaders in one term, made on purpose -------------------


@needs_firewall
def test_two_leaders_made_in_one_term_on_purpose_are_found_to_diverge_and_the_losing_side_is_archived_and_resynced(make_cluster):
    """The hole async mode keeps (docs/cluster.md): a partition outlasting FAILURE_TIMEOUT while discovery
    drops the other side. Both sides lead the same term and write at the same LSNs; healed, the
    divergence must be found wherever it is, the losing side archived, and every node converge."""
    cluster = make_cluster(3, env=FAST)
    lonely = cluster.wait_for_leader()
    token = cluster.signup(username="splitter").body["token"]
    cluster.wait_for_applied(lonely.status()["applied_lsn"])
    lonely.partition()
    cluster.dns("only", [lonely.address])  # the majority keeps it listed; it sees the others dropped
    majority = cluster.wait_for_leader(exclude=[lonely], timeout=20)
    wait_until(
        lambda: lonely.status()["current_role"] == "leader",
        timeout=20,
        what=f"{lonely.name}, alone past FAILURE_TIMEOUT and no longer listing the others, to lead",
        report=cluster.report,
    )
    assert lonely.status()["term"] == majority.status()["term"], "the premise: two leaders in one term"
    sides = {lonely.name: lonely, majority.name: majority}
    written = {name: [post(node, token, f"side {name} write {n}").status for n in range(3)] for name, node in sides.items()}
    assert all(status == 201 for statuses in written.values() for status in statuses), written
    lonely.heal()
    cluster.dns(None)
    cluster.wait_for_leader(timeout=30)
    wait_for_convergence(cluster, timeout=40)
    leader = cluster.wait_for_leader()
    contents = {p["content"] for p in leader.request("GET", "/api/posts?author=splitter&limit=100").body["items"]}
    archived = archived_text(node.data_dir for node in cluster.nodes)
    acknowledged = [f"side {name} write {n}" for name in sides for n in range(3)]
    lost = invariants.acknowledged_writes_kept(acknowledged, dict.fromkeys(contents, 1), quorum=False, archived=archived)
    assert not lost, f"{lost}\n{cluster.report()}"
    assert any("divergen" in node.logs() for node in cluster.nodes), "no node logged the divergence"


# --- case 4: a token outlives its lost signup -----------------------------------------------------------


@needs_firewall
def test_the_token_of_a_signup_lost_with_a_cut_off_leader_never_acts_as_the_next_owner_of_its_user_id(make_cluster):
    cluster = make_cluster(3, env={**FAST, "HEARTBEAT_INTERVAL": "1"})  # a 2.5 s lease: time to acknowledge while cut off
    old = cluster.wait_for_leader()
    settler = cluster.signup(old, username="settler")
    cluster.wait_for_applied(settler.lsn)  # the followers hold the leader's log (else none may lead: they are new)
    old.partition()
    lost = old.request("POST", "/api/auth/signup", json=signup_body("ghost"))
    assert lost.status == 201, f"the cut-off leader no longer acknowledged within its lease: {lost.status} {lost.body}"
    new = cluster.wait_for_leader(exclude=[old], timeout=20)
    heir = cluster.signup(new, username="heir")
    assert heir.body["user"]["id"] == lost.body["user"]["id"], "the new leader gave the lost signup's id to nobody"
    old.heal()
    cluster.wait_for_leader(timeout=30)
    wait_for_convergence(cluster)
    assert '"ghost"' in archived_text([old.data_dir]), "the lost signup is not in the deposed leader's archive"
    ghost_token = lost.body["token"]
    for node in cluster.nodes:
        status, username = who_is(target(node), ghost_token)
        assert status == 401, f"{node.name}: the lost signup's token answered {status} as {username!r}"
        attempt = post(node, ghost_token, "written with a dead token")
        assert attempt.status == 401, f"{node.name}: a post with the lost signup's token answered {attempt.status}"
    heirs_posts = new.request("GET", "/api/posts?author=heir").body["items"]
    assert heirs_posts == [], f"posts were made in the heir's name: {heirs_posts}"
    assert who_is(target(new), heir.body["token"]) == (200, "heir")


# --- case 5: full disks ---------------------------------------------------------------------------------


def test_a_follower_whose_disk_fills_up_goes_not_ready_refuses_writes_through_it_and_recovers_by_itself(make_cluster):
    cluster = make_cluster(3, env=FAST, disks={"backend-1": 24 * MIB})
    leader = cluster.wait_for_leader()
    full = cluster.node("backend-1")
    token = cluster.signup(leader, username="diskwriter").body["token"]
    cluster.wait_for_applied(post(leader, token, "before the disk fills").lsn)  # it holds data: it applies, not syncs
    full.disk.fill()
    for n in range(30):
        assert post(leader, token, f"while the follower is full {n}").status == 201

    def not_ready() -> bool:
        status = full.try_status() or {}
        return not full.is_ready() and status.get("ready") is False

    wait_until(not_ready, timeout=15, what=f"{full.name} with a full disk to report not ready", report=cluster.report)
    reason = full.status()["ready_reason"]
    words = ("disk", "space", "full", "apply", "storage")
    assert any(word in reason.lower() for word in words), f"ready_reason says not why: {reason!r}\n{cluster.report()}"
    through = post(full, token, "sent through the full follower")
    assert through.status == 503, f"a write through the full follower answered {through.status}: {through.body}"
    full.disk.free()
    full.wait_ready(timeout=20)
    wait_for_convergence(cluster)
    assert post(full, token, "after the space came back").status == 201


def test_a_leader_whose_disk_fills_up_steps_down_another_leads_within_seconds_and_it_leads_again_only_once_it_can_commit(
    make_cluster,
):
    cluster = make_cluster(3, env=FAST, disks={"backend-3": 24 * MIB})
    full = cluster.wait_for_leader(expect=cluster.node("backend-3"))
    with busy(cluster, through=lambda node: node is not full) as load:
        full.disk.fill()
        filled_at = time.monotonic()
        successor = cluster.wait_for_leader(exclude=[full], timeout=15)
        took = time.monotonic() - filled_at
        assert successor is not full and took < 10, f"another node led {took:.1f} s after the leader's disk filled"

        def full_node_does_not_lead() -> None:
            assert roles(cluster).get(full.name) != "leader", f"{full.name} leads with a full disk\n{cluster.report()}"

        watch(5, full_node_does_not_lead)  # past two periodic elections (ELECTION_INTERVAL 2 s)
        load.wait_for_progress()
        full.disk.free()
        cluster.wait_for_leader(timeout=30)
        load.wait_for_progress()
        load.check()
    # Nor to a peer: a vote or a term it cannot persist is a 503 storage_failure, not a traceback.
    crashes = [line for line in full.logs().splitlines() if "unexpected error on" in line]
    assert not crashes, f"{full.name} answered peers with 500s: {crashes[:5]}"
    # And a client's write whose commit (with its Idempotency-Key's answer) the disk refused: a 503, no traceback.
    logs = full.logs()
    at = logs.find("Traceback")
    assert at < 0, f"{full.name} logged a traceback:\n{logs[max(0, at - 500) : at + 2500]}"


# --- case 6: clocks off by 25-40 s ----------------------------------------------------------------------


def clock_offset(node) -> float:
    """How far the node's wall clock is ahead of ours, from the Date header it answers with (±1 s)."""
    from email.utils import parsedate_to_datetime

    reply = node.request("GET", "/healthz")
    return parsedate_to_datetime(reply.headers["date"]).timestamp() - time.time()


def test_a_token_from_a_login_on_a_node_25_s_ahead_is_accepted_on_the_others_and_40_s_off_isolates_it_saying_so(make_cluster):
    cluster = make_cluster(3, env=FAST, fake_clocks={"backend-1": 25})
    leader = cluster.wait_for_leader()
    ahead = cluster.node("backend-1")
    assert 23 <= clock_offset(ahead) <= 27, f"libfaketime did not move {ahead.name}'s clock: {clock_offset(ahead):.1f} s"
    # At the leader: the first write of a cluster sends the empty followers a snapshot, which can take
    # longer than a forwarded write waits to be applied (2 s) on a busy machine.
    cluster.wait_for_applied(cluster.signup(leader, username="traveller").lsn)
    login = ahead.request("POST", "/api/auth/login", json={"username": "traveller", "password": "password123"})
    assert login.status == 200, login.body
    for node in cluster.nodes:
        assert who_is(target(node), login.body["token"]) == (200, "traveller"), f"{node.name} refused a token from 25 s ahead"

    token = cluster.signup(cluster.node("backend-2"), username="stayer").body["token"]
    ahead.set_clock(40)

    def says_clock() -> bool:
        status = ahead.try_status() or {}
        return bool((status.get("clock") or {}).get("beyond_window")) and not ahead.is_ready()

    # Writes through it while it finds out: the leader refuses its signature, which is no client's fault.
    answers = []
    deadline = time.monotonic() + 20
    while not says_clock():
        assert time.monotonic() < deadline, f"{ahead.name} never said its clock is off\n{cluster.report()}"
        reply = post(ahead, token, f"while the clock moves {len(answers)}")
        answers.append((reply.status, error_code(reply)))
    assert clock_offset(ahead) > 37, f"libfaketime did not move {ahead.name}'s clock: {clock_offset(ahead):.1f} s"
    assert not [a for a in answers if a[0] == 401], f"a client was told 401 for a node's clock: {answers}"
    refused = post(ahead, token, "through the node 40 s ahead")
    assert refused.status == 503, f"a write through a node 40 s off answered {refused.status}: {refused.body}"
    assert post(cluster.node("backend-2"), token, "through a node on time").status == 201

    ahead.set_clock(0)
    ahead.wait_ready(timeout=20)
    wait_for_convergence(cluster)


# --- case 7: a database damaged while its node was stopped ----------------------------------------------


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_follower_whose_database_was_damaged_while_stopped_moves_it_aside_resyncs_and_never_reports_ready_while_failing(
    make_cluster,
):
    cluster = make_cluster(3, env=FAST)
    leader = cluster.wait_for_leader()
    victim = cluster.node("backend-1")
    token = cluster.signup(leader, username="archivist").body["token"]
    filler = "x" * 900
    ids = [post(leader, token, f"{n} {filler}").body["id"] for n in range(250)]
    cluster.wait_for_applied(leader.status()["applied_lsn"])
    sample = random.Random(7)
    for where in ("start", "middle"):
        victim.stop()
        damage_file(victim.database, where)
        damaged = digest(victim.database)
        assert post(leader, token, f"written while damaged at the {where}").status == 201
        victim.start(wait=False)
        failing_while_ready: list[str] = []

        def converged_without_lying(failing_while_ready=failing_while_ready) -> bool:
            if victim.is_ready():
                checks = [victim.request("GET", f"/api/posts/{i}") for i in sample.sample(ids, 10)]
                checks.append(signed_reply(victim, "GET", "/cluster/checksum"))
                failing_while_ready.extend(f"{c.status} {c.body}" for c in checks if c.status >= 500)
            try:
                mine, theirs = victim.checksum(), leader.checksum()
            except Exception:  # not answering, or answering 500: not converged
                return False
            same = (mine["checksum"], mine["applied_lsn"]) == (theirs["checksum"], theirs["applied_lsn"])
            return same and victim.is_ready()

        what = f"{victim.name} (damaged at the {where}) to resync"
        wait_until(converged_without_lying, timeout=40, what=what, report=cluster.report)
        assert not failing_while_ready, f"damaged at the {where}: ready while answering {failing_while_ready[:3]}"
        kept = [p for p in victim.data_dir.rglob("*") if p.is_file() and p != victim.database and digest(p) == damaged]
        assert kept, f"the damaged file (damage at the {where}) was not kept under {victim.data_dir}"
        assert kept[0].name in victim.logs(), f"no log line says where the damaged file went ({kept[0]})"
        reply = post(victim, token, f"through the repaired node ({where})")
        assert reply.status == 201 and victim.request("GET", f"/api/posts/{reply.body['id']}").status == 200
    assert not invariants.one_leader_per_term(leader_claims({n.name: n.logs() for n in cluster.nodes}))


# --- case 8: a second process on a DATA_DIR in use -------------------------------------------------------


def test_a_second_node_process_on_a_data_dir_in_use_exits_with_a_message_naming_the_directory(make_cluster):
    cluster = make_cluster(3, env=FAST)
    cluster.wait_for_leader()
    owner = cluster.node("backend-1")
    intruder = cluster.add_node(wait=False, env={"DATA_DIR": str(owner.data_dir)})
    what = f"{intruder.name} on {owner.data_dir} (in use) to exit"
    wait_until(lambda: not intruder.is_running, timeout=20, what=what, report=cluster.report)
    assert intruder._local.exit_code not in (0, None), f"{intruder.name} exited with {intruder._local.exit_code}"
    assert str(owner.data_dir) in intruder.logs(), f"the refusal does not name {owner.data_dir}:\n{intruder.logs(tail=10)}"
    owner.wait_ready(timeout=10)
    token = cluster.signup(owner, username="ownerstill").body["token"]
    assert post(owner, token, "the owner still writes").status == 201
    wait_for_convergence(cluster)
