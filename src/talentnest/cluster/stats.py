"""Replication's counters, kept by both sides for /cluster/status and /metrics."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from talentnest.units import human_bytes


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
    sync_failures: int = 0
    snapshots_served: int = 0
    divergences: int = 0
    # The last snapshot this node made (to serve) or installed: compressed and database sizes.
    snapshot_bytes: int = 0
    snapshot_raw_bytes: int = 0
    # The snapshot this node is receiving now, if any.
    sync_progress: SyncProgress | None = None


@dataclass
class SyncProgress:
    """A snapshot on its way to this node: raw bytes written of the total, and how fast (shown in
    ``/cluster/status`` as ``replication.sync`` and logged while it runs)."""

    source_id: int
    started: float
    clock: Callable[[], float] = field(repr=False)
    bytes: int = 0
    total: int = 0
    _logged_at: float = 0.0

    def add(self, raw: int) -> None:
        self.bytes += raw

    def restart(self) -> None:
        self.bytes = self.total = 0
        self.started = self.clock()

    @property
    def percent(self) -> float:
        return round(100.0 * self.bytes / self.total, 1) if self.total else 0.0

    @property
    def rate(self) -> float:
        """Raw bytes per second since the transfer started."""
        elapsed = self.clock() - self.started
        return self.bytes / elapsed if elapsed > 0 else 0.0

    def should_log(self, every: float) -> bool:
        now = self.clock()
        if now - self._logged_at >= every or self.bytes == self.total:
            self._logged_at = now
            return True
        return False

    def describe(self) -> str:
        return (
            f"received {human_bytes(self.bytes)} of {human_bytes(self.total)} ({self.percent:.1f}%) from node "
            f"{self.source_id}, {human_bytes(self.rate)}/s"
        )

    def as_dict(self) -> dict:
        return {
            "source_id": self.source_id,
            "bytes": self.bytes,
            "total": self.total,
            "percent": self.percent,
            "rate": round(self.rate),
            "seconds": round(self.clock() - self.started, 3),
        }
