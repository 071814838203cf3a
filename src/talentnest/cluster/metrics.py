"""The cluster's figures for /metrics, read from the node's live state at each scrape (nothing is kept twice).

Role, term, leader, LSNs, each follower's lag, replication, forwarding, election and sync counters.
Nothing here is secret: IDs, addresses, counts and sizes only.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
    SummaryMetricFamily,
)

from talentnest.cluster.types import Role

if TYPE_CHECKING:
    from talentnest.cluster.forward import ForwardStats
    from talentnest.cluster.node import ClusterNode
    from talentnest.cluster.replication import Replication


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=value)


def _file_size(path) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


class ClusterCollector:
    """A prometheus_client collector over one ``ClusterNode``, its ``Replication`` and the forwarder's
    counts. ``collect`` never raises for a node mid-change: every value is read once, as it is.
    """

    def __init__(self, node: ClusterNode, replication: Replication, forwards: ForwardStats, *, version: str):
        self.node = node
        self.replication = replication
        self.forwards = forwards
        self.version = version

    def describe(self) -> list[Metric]:
        # Registering must not call collect() (the node has not started yet).
        return []

    def collect(self) -> Iterator[Metric]:
        node = self.node
        db = node.db
        is_leader = node.role == Role.LEADER
        applied = db.last_lsn

        info = InfoMetricFamily("talentnest_node", "This node: its ID, address, version and replication mode.")
        info.add_metric(
            (),
            {
                "node_id": str(node.node_id),
                "address": node.url,
                "version": self.version,
                "replication_mode": node.settings.replication_mode,
            },
        )
        yield info
        role = GaugeMetricFamily("talentnest_role", "1 for this node's current role, 0 for the others.", labels=("role",))
        for candidate in Role:
            role.add_metric((candidate.value,), 1.0 if node.role == candidate else 0.0)
        yield role
        yield _gauge("talentnest_is_leader", "1 if this node leads (with or without a valid lease), else 0.", is_leader)
        yield _gauge("talentnest_term", "The current term (raised by every change of leader).", node.term)
        leader = node.node_id if is_leader else (node.leader_id if node.current_leader_url() else None)
        yield _gauge(
            "talentnest_leader_id",
            "The ID of the leader this node follows (its own if it leads); -1 if none.",
            -1 if leader is None else leader,
        )
        yield _gauge("talentnest_ready", "1 if this node is ready to serve (synced, leader known), else 0.", node.readiness()[0])
        yield _gauge("talentnest_syncing", "1 while this node installs a snapshot or catches up, else 0.", node.worker.syncing)
        yield _gauge("talentnest_applied_lsn", "The LSN of the last entry this node has applied.", applied)
        last = applied if is_leader else max(applied, self._leader_lsn())
        yield _gauge("talentnest_last_lsn", "The cluster's last LSN as this node knows it (the leader's last entry).", last)
        yield _gauge(
            "talentnest_lag_entries", "Entries this node is behind the leader's last LSN (0 on the leader).", last - applied
        )
        yield _gauge("talentnest_log_first_lsn", "The oldest LSN this node's replication log still holds.", db.first_lsn)
        yield _gauge(
            "talentnest_database_size_bytes", "Size of this node's SQLite files (database and write-ahead log).", self._db_size()
        )

        view = node.view()
        yield _gauge("talentnest_quorum_voters", "Members that count for a majority (this node included).", view.voters)
        yield _gauge("talentnest_quorum_reachable", "Members this node reaches now (itself included).", view.reachable)
        healthy = GaugeMetricFamily(
            "talentnest_peer_healthy", "1 if this node hears from the member, else 0.", labels=("peer_id", "address")
        )
        for peer in view.peers:
            healthy.add_metric((str(peer.id), peer.url), 1.0 if peer.alive else 0.0)
        yield healthy
        yield self._departed()

        yield from self._followers(is_leader)
        yield from self._replication_counters()

        yield _counter("talentnest_forwarded_writes", "Writes this node forwarded to the leader.", self.forwards.forwarded)
        yield _counter(
            "talentnest_forwarded_write_failures",
            "Forwarded writes the leader did not answer (the client got 503).",
            self.forwards.failures,
        )
        elections = CounterMetricFamily(
            "talentnest_elections",
            "Elections this node stood in (real votes, after a won pre-vote), by outcome.",
            labels=("outcome",),
        )
        elections.add_metric(("won",), node.elections_won)
        elections.add_metric(("lost",), node.elections_lost)
        yield elections
        yield _counter(
            "talentnest_leader_changes", "Times the leader this node knows changed to another node.", node.leader_changes
        )

    def _departed(self) -> Metric:
        """Members that stopped being members (they left, or died and discovery dropped them), for
        FAILURE_TIMEOUT after: a stopped node leaves /cluster/status at once, and this is where it can
        still be seen."""
        departed = GaugeMetricFamily(
            "talentnest_peer_departed_seconds",
            "Members that stopped being members within FAILURE_TIMEOUT: seconds since each departed.",
            labels=("peer_id", "address"),
        )
        now = self.node.clock.monotonic()
        for peer, since in list(self.node.membership.departed.values()):
            departed.add_metric((str(peer.id), peer.url), max(0.0, now - since))
        return departed

    def _leader_lsn(self) -> int:
        node = self.node
        leader = node.membership.by_id(node.leader_id)
        return max(self.replication.follower.leader_last_lsn, leader.last_lsn if leader is not None else 0)

    def _db_size(self) -> int:
        path = self.node.db.path
        return _file_size(path) + _file_size(f"{path}-wal")

    def _followers(self, is_leader: bool) -> Iterator[Metric]:
        labels = ("follower_id", "address")
        match = GaugeMetricFamily(
            "talentnest_follower_match_lsn", "On the leader: the last LSN each follower holds.", labels=labels
        )
        lag = GaugeMetricFamily(
            "talentnest_follower_lag_entries", "On the leader: entries each follower is behind.", labels=labels
        )
        lag_seconds = GaugeMetricFamily(
            "talentnest_follower_lag_seconds",
            "On the leader: age of the oldest entry each follower lacks (0 when it holds every entry).",
            labels=labels,
        )
        failing = GaugeMetricFamily(
            "talentnest_follower_send_failures", "On the leader: failed sends in a row to each follower.", labels=labels
        )
        if is_leader:
            now = self.node.clock.monotonic()
            last = self.node.db.last_lsn
            for stream in list(self.replication.leader.streams.values()):
                key = (str(stream.node_id), stream.url)
                match.add_metric(key, stream.match_lsn)
                lag.add_metric(key, max(0, last - stream.match_lsn))
                lag_seconds.add_metric(key, stream.lag_seconds(now))
                failing.add_metric(key, stream.failures)
        yield from (match, lag, lag_seconds, failing)

    def _replication_counters(self) -> Iterator[Metric]:
        stats = self.replication.stats
        yield _counter("talentnest_replication_entries_sent", "Log entries the leader sent to followers.", stats.entries_sent)
        yield _counter(
            "talentnest_replication_bytes_sent",
            "Bytes of replication requests the leader sent (entries and envelope).",
            stats.bytes_sent,
        )
        yield _counter("talentnest_replication_batches_sent", "Replication requests followers answered.", stats.batches_sent)
        yield _counter(
            "talentnest_replication_send_failures",
            "Replication requests that got no answer (retried with backoff).",
            stats.send_failures,
        )
        yield _counter(
            "talentnest_replication_entries_applied", "Log entries this node applied from a leader.", stats.entries_applied
        )
        yield _counter(
            "talentnest_replication_bytes_applied", "Bytes of row changes in the entries this node applied.", stats.bytes_applied
        )
        sync = SummaryMetricFamily(
            "talentnest_sync_duration_seconds",
            "Snapshots this node installed (count) and the time they took, transfer included (sum).",
            count_value=stats.syncs,
            sum_value=stats.sync_seconds,
        )
        yield sync
        yield _counter("talentnest_sync_bytes", "Compressed snapshot bytes this node received.", stats.sync_bytes)
        yield _counter(
            "talentnest_snapshots_served", "Snapshots this node made for others (GET /cluster/sync).", stats.snapshots_served
        )
        yield _counter(
            "talentnest_divergences",
            "Times this node archived entries the leader never had, before resyncing.",
            stats.divergences,
        )
        size = GaugeMetricFamily(
            "talentnest_snapshot_size_bytes",
            "The last snapshot this node made or installed: compressed, and the database it holds (0 before any).",
            labels=("form",),
        )
        size.add_metric(("compressed",), stats.snapshot_bytes)
        size.add_metric(("database",), stats.snapshot_raw_bytes)
        yield size
