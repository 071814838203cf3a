"""The leader's lease: it may take writes while a majority of the members (itself included) answered a
message it sent within the last ``duration`` seconds of its monotonic clock.

Followers wait longer than ``duration`` without hearing from their leader before they vote for another
(``ClusterNode.suspect_after``), so a lease never overlaps a successor's term: the timing relation is
checked at start (``check_timing``) and the simulation's invariants check it in every run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable


class Lease:
    """Acknowledgements by member address: the send time of the newest message each one accepted."""

    def __init__(self, clock: Callable[[], float], duration: float):
        self.clock = clock
        self.duration = duration
        self._acks: dict[str, float] = {}

    def acknowledge(self, member: str, sent_at: float) -> None:
        """``member`` accepted a message sent at ``sent_at`` in the current term."""
        if sent_at > self._acks.get(member, float("-inf")):
            self._acks[member] = sent_at

    def forget(self, member: str) -> None:
        self._acks.pop(member, None)

    def clear(self) -> None:
        """A new term: acknowledgements of the old one count for nothing."""
        self._acks.clear()

    def expiry(self, voters: int, members: Iterable[str]) -> float:
        """When the lease ends, counting only ``members`` (of ``voters`` in all, this node included):
        infinite for a cluster of one, in the past when too few ever answered."""
        needed = voters // 2  # acknowledgements needed besides our own
        if needed == 0:
            return float("inf")
        acks = sorted((self._acks[m] for m in members if m in self._acks), reverse=True)
        if len(acks) < needed:
            return float("-inf")
        return acks[needed - 1] + self.duration

    def valid(self, voters: int, members: Iterable[str]) -> bool:
        return self.clock() < self.expiry(voters, members)


def check_timing(*, lease: float, suspect_after: float) -> None:
    """Refuse timings under which a deposed leader could still write after a successor was elected."""
    if not lease < suspect_after:
        raise ValueError(f"the lease ({lease:g} s) must end before followers suspect their leader ({suspect_after:g} s)")
