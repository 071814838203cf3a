"""Replication's counters, kept by both sides for /cluster/status and /metrics."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Stats:
    """Counters for /cluster/status and /metrics."""

    entries_sent: int = 0
    bytes_sent: int = 0
    batches_sent: int = 0
    send_failures: int = 0
    entries_applied: int = 0
    bytes_applied: int = 0
    syncs: int = 0
    sync_bytes: int = 0
    sync_seconds: float = 0.0
    snapshots_served: int = 0
    divergences: int = 0
    # The last snapshot this node made (to serve) or installed: compressed and database sizes.
    snapshot_bytes: int = 0
    snapshot_raw_bytes: int = 0
