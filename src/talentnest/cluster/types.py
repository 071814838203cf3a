"""Value types of the cluster: roles, what a node knows of its peers, election decisions and cycles."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    LEADER = "leader"
    FOLLOWER = "follower"
    CANDIDATE = "candidate"


class Action(StrEnum):
    NONE = "none"
    CAMPAIGN = "campaign"
    CATCH_UP = "catch_up"
    STEP_DOWN = "step_down"
    HANDOVER = "handover"


@dataclass(frozen=True)
class PeerView:
    """One other member as this node sees it at one instant."""

    id: int
    url: str
    alive: bool  # answered recently and did not refuse since
    term: int = 0
    role: str = Role.FOLLOWER
    leader_id: int | None = None
    last_lsn: int = 0
    last_term: int = 0
    ready: bool = False
    alive_for: float = 0.0  # seconds it has been answering without a miss
    eligible: bool = True  # it may lead (its own health says so)

    @property
    def log_position(self) -> tuple[int, int]:
        return (self.last_term, self.last_lsn)


@dataclass(frozen=True)
class ClusterView:
    """Everything ``elect`` needs: this node's state and its peers, no I/O behind it."""

    self_id: int
    role: Role
    term: int
    leader_id: int | None
    last_lsn: int
    last_term: int
    peers: tuple[PeerView, ...] = ()
    voters: int = 1  # members whose majority is needed (this node and its peers, or CLUSTER_SIZE)
    leader_alive: bool = False  # a follower has heard from its leader recently
    lease_valid: bool = False  # a leader has heard from a majority within the lease
    syncing: bool = False
    eligible: bool = True  # this node may lead (health.Health)
    not_eligible_because: str = ""
    drained: bool = False  # an operator's drain is the only reason: hand over, but never just step down
    discovering: bool = False  # just started: peers not probed yet
    blind: bool = False  # no peer known and discovery never answered: alone or not cannot be told yet
    periodic: bool = False  # this cycle is the periodic election (every ELECTION_INTERVAL)
    handover_settle: float = 2.0  # seconds a higher-ID peer must have been alive before a handover

    @property
    def log_position(self) -> tuple[int, int]:
        return (self.last_term, self.last_lsn)

    @property
    def alive_peers(self) -> list[PeerView]:
        return [p for p in self.peers if p.alive]

    @property
    def reachable(self) -> int:
        """Members this node reaches, itself included."""
        return 1 + sum(1 for p in self.peers if p.alive)

    @property
    def has_majority(self) -> bool:
        return self.reachable > self.voters // 2


@dataclass(frozen=True)
class Decision:
    """What the election cycle decided, and why, in words (logged and asserted in tests)."""

    action: Action
    reason: str
    target: int | None = None


@dataclass(frozen=True)
class Cycle:
    """What one cycle of the control loop actually did (not what it decided and then skipped)."""

    action: Action
    text: str

    def __str__(self) -> str:
        return self.text
