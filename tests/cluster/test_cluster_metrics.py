"""/metrics on real nodes: it parses as Prometheus text, and LSNs, lag and counters move as they should.

Writes go through a follower (forwarded) and the leader; a paused follower makes the leader's lag
figures rise and fall back; a SIGKILL of the leader moves terms, elections and leader changes.
"""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.cluster.harness import Node, wait_until

FAST = {"HEARTBEAT_INTERVAL": "0.5", "FAILURE_TIMEOUT": "5", "ELECTION_INTERVAL": "2"}
pytestmark = pytest.mark.cluster


class Scrape:
    """One scrape of a node's /metrics, parsed by prometheus_client's own parser."""

    def __init__(self, text: str):
        self.text = text
        self.families = list(text_string_to_metric_families(text))
        self.samples = [sample for family in self.families for sample in family.samples]

    def value(self, name: str, **labels: str) -> float:
        """The value of the one sample called ``name`` whose labels include ``labels``."""
        found = [s.value for s in self.samples if s.name == name and labels.items() <= s.labels.items()]
        assert len(found) == 1, f"{len(found)} samples of {name}{labels or ''} in:\n{self.text}"
        return found[0]

    def labels_of(self, name: str) -> list[dict[str, str]]:
        return [s.labels for s in self.samples if s.name == name]


def scrape(node: Node) -> Scrape:
    response = node.cluster.http.get(f"{node.url}/metrics", timeout=5)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return Scrape(response.text)


def follower_value(scraped: Scrape, name: str, follower: Node) -> float:
    return scraped.value(name, follower_id=str(follower.node_id))


def test_metrics_parse_and_follow_writes_lag_and_a_failover(make_cluster):
    cluster = make_cluster(3, env=FAST)
    leader = cluster.wait_for_leader()
    follower, other = (node for node in cluster.nodes if node is not leader)
    # The first write finds the followers empty: they install a snapshot rather than apply it.
    signup = cluster.signup(follower, username="metered")
    token = signup.body["token"]
    cluster.wait_for_applied(signup.lsn)
    for node in (follower, other):
        synced = scrape(node)
        assert synced.value("talentnest_sync_duration_seconds_count") >= 1
        assert synced.value("talentnest_sync_bytes_total") > 0
        assert synced.value("talentnest_snapshot_size_bytes", form="database") > 0
    assert scrape(leader).value("talentnest_snapshots_served_total") >= 2
    before = {node.name: scrape(node) for node in cluster.nodes}
    lsn_before = before[leader.name].value("talentnest_applied_lsn")

    # Writes: three posts through the follower (forwarded), two on the leader.
    for n in range(3):
        cluster.post(token, f"through the follower {n}", node=follower)
    for n in range(2):
        lsn = cluster.post(token, f"on the leader {n}", node=leader).lsn
    cluster.wait_for_applied(lsn)
    assert follower.request("GET", "/api/users/metered").status == 200
    written = lsn - lsn_before
    assert written == 5

    # On busy machines a short-heartbeat leader may lose and win back its lease: read it while it leads.
    on_leader = wait_until(
        lambda: (scraped := scrape(leader)).value("talentnest_role", role="leader") == 1 and scraped,
        timeout=10,
        what=f"{leader.name} to lead again",
        report=cluster.report,
    )
    assert on_leader.value("talentnest_role", role="follower") == 0
    assert on_leader.value("talentnest_is_leader") == 1
    assert on_leader.value("talentnest_leader_id") == leader.node_id
    assert on_leader.value("talentnest_term") == leader.status()["term"]
    assert on_leader.value("talentnest_applied_lsn") == on_leader.value("talentnest_last_lsn") == lsn
    assert on_leader.value("talentnest_lag_entries") == 0
    assert on_leader.value("talentnest_node_info", node_id=str(leader.node_id), address=leader.url) == 1
    assert on_leader.value("talentnest_elections_total", outcome="won") >= 1
    assert on_leader.value("talentnest_quorum_voters") == on_leader.value("talentnest_quorum_reachable") == 3

    def leader_sees_followers_caught_up() -> Scrape | None:
        scraped = scrape(leader)
        caught_up = all(
            follower_value(scraped, "talentnest_follower_match_lsn", node) == lsn
            and follower_value(scraped, "talentnest_follower_lag_entries", node) == 0
            and follower_value(scraped, "talentnest_follower_lag_seconds", node) == 0
            for node in (follower, other)
        )
        return scraped if caught_up else None

    on_leader = wait_until(leader_sees_followers_caught_up, timeout=10, what="the leader to see both followers at LSN")
    sent = on_leader.value("talentnest_replication_entries_sent_total") - before[leader.name].value(
        "talentnest_replication_entries_sent_total"
    )
    assert sent >= 2 * written  # every entry to each of two followers (a retry may send one again)
    assert on_leader.value("talentnest_replication_bytes_sent_total") > before[leader.name].value(
        "talentnest_replication_bytes_sent_total"
    )
    # The leader counts every post it wrote, forwarded or not, under the route's template.
    posts = ("talentnest_http_requests_total", {"method": "POST", "route": "/api/posts", "status": "201"})
    assert on_leader.value(posts[0], **posts[1]) - _or_zero(before[leader.name], *posts) == 5

    on_follower = scrape(follower)
    assert on_follower.value("talentnest_role", role="follower") == 1
    assert on_follower.value("talentnest_is_leader") == 0
    assert on_follower.value("talentnest_leader_id") == leader.node_id
    assert on_follower.value("talentnest_applied_lsn") == lsn
    assert on_follower.value("talentnest_last_lsn") >= lsn
    applied = on_follower.value("talentnest_replication_entries_applied_total") - before[follower.name].value(
        "talentnest_replication_entries_applied_total"
    )
    assert applied == written  # each entry exactly once
    assert on_follower.value("talentnest_replication_bytes_applied_total") > before[follower.name].value(
        "talentnest_replication_bytes_applied_total"
    )
    forwarded = on_follower.value("talentnest_forwarded_writes_total") - before[follower.name].value(
        "talentnest_forwarded_writes_total"
    )
    assert forwarded == 3
    assert on_follower.value("talentnest_forwarded_write_failures_total") == 0
    assert on_follower.value(posts[0], **posts[1]) - _or_zero(before[follower.name], *posts) == 3
    assert on_follower.value("talentnest_http_request_duration_seconds_count", method="POST", route="/api/posts") >= 3
    # Route templates, not raw paths: no user name ever becomes a label.
    routes = {labels["route"] for labels in on_follower.labels_of("talentnest_http_requests_total")}
    assert "/api/users/{username}" in routes and not any("metered" in route for route in routes)
    assert on_follower.labels_of("talentnest_follower_lag_entries") == []  # followers stream to no one

    # A paused follower falls behind: the leader's lag figures for it rise, then fall back to 0.
    other.pause()
    try:
        for n in range(5):
            lsn = cluster.post(token, f"while {other.name} sleeps {n}", node=leader).lsn

        def lagging() -> Scrape | None:
            scraped = scrape(leader)
            behind = follower_value(scraped, "talentnest_follower_lag_entries", other) >= 5
            return scraped if behind and follower_value(scraped, "talentnest_follower_lag_seconds", other) > 0 else None

        behind = wait_until(lagging, timeout=10, what=f"the leader to report {other.name} behind")
        assert follower_value(behind, "talentnest_follower_match_lsn", other) <= lsn - 5
    finally:
        other.resume()
    wait_until(
        lambda: follower_value(scrape(leader), "talentnest_follower_lag_entries", other) == 0,
        timeout=15,
        what=f"{other.name}'s lag back to 0",
    )
    cluster.wait_for_applied(lsn)

    # A failover: a higher term everywhere, one more won election, and the survivors saw the leader change.
    old_term = scrape(follower).value("talentnest_term")
    survivors_before = {node.name: scrape(node) for node in (follower, other)}
    leader.stop(graceful=False)
    new_leader = cluster.wait_for_leader(exclude=[leader], timeout=20)
    for node in (follower, other):
        scraped = scrape(node)
        assert scraped.value("talentnest_term") > old_term
        assert scraped.value("talentnest_leader_id") == new_leader.node_id
        changes = scraped.value("talentnest_leader_changes_total")
        assert changes == survivors_before[node.name].value("talentnest_leader_changes_total") + 1
    won = scrape(new_leader).value("talentnest_elections_total", outcome="won")
    assert won == survivors_before[new_leader.name].value("talentnest_elections_total", outcome="won") + 1
    assert scrape(new_leader).value("talentnest_is_leader") == 1


def _or_zero(scraped: Scrape, name: str, labels: dict[str, str]) -> float:
    """The counter's value, or 0 when it has no sample yet (a label set appears on its first request)."""
    found = [s.value for s in scraped.samples if s.name == name and labels.items() <= s.labels.items()]
    return found[0] if found else 0.0
