"""The cluster's safety and liveness properties as code, over plain observations.

Written once, used by the simulation after every step and at the end of a run, and usable by a
multi-process test that gathers the same observations over HTTP (``/cluster/status`` polled for
leaders and terms, client answers for acknowledged writes, ``/cluster/checksum`` at the end, the
archive files in each ``DATA_DIR/archive/``). Each check returns the violations it found, each
naming its invariant, so a failure says which property broke.

The invariants (docs/simulation.md explains each):

- ``one_leader_per_term``: two nodes never lead the same term.
- ``lease_overlap``: commits ordered by (virtual) time never go down in term: a deposed leader stops
  writing before its successor starts (its lease never overlaps the successor's writes).
- ``acked_write_lost``: in quorum mode no acknowledged write is ever lost; in async mode one may be
  lost only as a deposed leader's unreplicated write, and is then in a divergence archive
  (``acked_write_lost_unarchived`` otherwise).
- ``applied_twice``: no numbered content exists twice (one Idempotency-Key, one row).
- ``lsn_backwards``: a node's LSN never goes down unless an archive covers what disappeared.
- ``divergent_not_archived``: every entry a node once held and no longer holds is in its archive.
- ``no_convergence``: once faults stop, every node holds the same data within a bounded time.
- ``min_lsn_read_stale``: a read with ``X-Min-LSN`` never answers older data than asked.
- ``read_your_writes``: a write acknowledged through a node is visible there at once.
- ``token_misattributed`` / ``token_refused``: a token acts as its own account, on every node.
- ``vote_not_durable`` / ``ack_beyond_commit``: wire checks: a granted vote is on disk when its
  answer leaves; a follower never acknowledges an LSN it has not committed.
- ``server_error``: no request is answered 500.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Violation:
    invariant: str
    detail: str
    at: float = 0.0

    def __str__(self) -> str:
        return f"{self.invariant} at {self.at:.3f}s: {self.detail}"


@dataclass(frozen=True)
class Commit:
    """A write committed by a node while it led (not an apply)."""

    at: float
    node: int
    term: int
    lsn: int


@dataclass(frozen=True)
class AckedWrite:
    """A write a client was told had happened (201, or a replay of it)."""

    content: str
    key: str
    at: float
    via: int  # the node that answered the client
    leader: int | None
    lsn: int | None
    post_id: int | None
    sent: float | None = None  # when the client first sent it (its leader may have committed it since)


@dataclass(frozen=True)
class Read:
    """A read of one acknowledged write: where, with which X-Min-LSN, what came back."""

    content: str
    at: float
    node: int
    min_lsn: int | None
    status: int
    answered_lsn: int | None
    got: str | None  # the content answered, None if not found
    after_write_via_same_node: bool = False


# --- pure checks over observations ---------------------------------------------------------------


def one_leader_per_term(claims: Iterable[tuple[float, int, int]]) -> list[Violation]:
    """``claims``: (time, term, node) for every node seen leading a term."""
    first: dict[int, int] = {}
    violations = []
    for at, term, node in claims:
        holder = first.setdefault(term, node)
        if holder != node:
            violations.append(Violation("one_leader_per_term", f"nodes {holder} and {node} both led term {term}", at))
    return violations


def commits_in_term_order(commits: Iterable[Commit]) -> list[Violation]:
    """Commits in time order never go down in term (a lease never overlaps a successor's writes)."""
    highest: Commit | None = None
    violations = []
    for commit in sorted(commits, key=lambda c: c.at):
        if highest is not None and commit.term < highest.term:
            violations.append(
                Violation(
                    "lease_overlap",
                    f"node {commit.node} committed LSN {commit.lsn} in term {commit.term} after node {highest.node} "
                    f"had committed LSN {highest.lsn} in term {highest.term} (at {highest.at:.3f}s)",
                    commit.at,
                )
            )
        if highest is None or commit.term > highest.term:
            highest = commit
    return violations


def acked_writes_kept(
    acked: Iterable[AckedWrite],
    final: Mapping[str, int],
    archived: set[str],
    *,
    quorum: bool,
    nodes: int = 3,
    wiped: Iterable[tuple[float, int]] = (),
    at: float = 0.0,
) -> list[Violation]:
    """Every acknowledged write is in the final data; in async mode a lost one must be archived.

    A lost disk (``wiped``: (time, node) of each) excuses what no disk can keep: in async mode a
    write whose leader lost its disk after acknowledging it; in quorum mode one after a majority of
    the disks were lost (all the copies may have been on them).
    """
    wiped = list(wiped)
    majority = nodes // 2 + 1
    violations = []
    for write in acked:
        if final.get(write.content, 0) > 0:
            continue
        since = write.sent if write.sent is not None else write.at
        lost_disks = {node for when, node in wiped if when >= since}
        if (quorum and len(lost_disks) >= majority) or (not quorum and write.leader in lost_disks):
            continue
        where = f"'{write.content}' (acknowledged by node {write.via} at {write.at:.3f}s, LSN {write.lsn}, leader {write.leader})"
        if quorum:
            violations.append(Violation("acked_write_lost", f"{where} is not in the final data", at))
        elif write.content not in archived:
            violations.append(Violation("acked_write_lost_unarchived", f"{where} is neither in the final data nor archived", at))
    return violations


def nothing_applied_twice(final: Mapping[str, int], *, at: float = 0.0) -> list[Violation]:
    return [
        Violation("applied_twice", f"'{content}' is in the data {count} times", at)
        for content, count in final.items()
        if count > 1
    ]


def reads_not_stale(reads: Iterable[Read], final: Mapping[str, int], *, at: float = 0.0) -> list[Violation]:
    """A read with X-Min-LSN answered older data than asked; a write not visible where it was acknowledged."""
    violations = []
    for read in reads:
        survived = final.get(read.content, 0) > 0
        if read.status != 200 and read.status != 404:
            continue
        if read.min_lsn is not None:
            if read.status == 200 and read.answered_lsn is not None and read.answered_lsn < read.min_lsn:
                violations.append(
                    Violation(
                        "min_lsn_read_stale",
                        f"node {read.node} answered at LSN {read.answered_lsn} a read asking X-Min-LSN {read.min_lsn}",
                        read.at,
                    )
                )
            elif survived and read.got != read.content:
                violations.append(
                    Violation(
                        "min_lsn_read_stale",
                        f"node {read.node} answered {read.status} ({read.got!r}) for '{read.content}' with X-Min-LSN "
                        f"{read.min_lsn} (its write's LSN), answering at LSN {read.answered_lsn}",
                        read.at,
                    )
                )
        elif read.after_write_via_same_node and survived and read.got != read.content:
            violations.append(
                Violation(
                    "read_your_writes",
                    f"node {read.node} acknowledged '{read.content}' but then answered {read.status} for it "
                    f"(at LSN {read.answered_lsn})",
                    read.at,
                )
            )
    return violations


def converged(lsns: Mapping[int, int], checksums: Mapping[int, str]) -> bool:
    return len(set(lsns.values())) == 1 and len(set(checksums.values())) == 1


# --- the incremental checker the simulation feeds ---------------------------------------------------


@dataclass
class Checker:
    """Takes observations as they happen; cheap checks run at once, the rest in ``finish``."""

    quorum: bool
    report: Callable[[Violation], None] | None = None  # where violations go (default: ``violations``)
    violations: list[Violation] = field(default_factory=list)
    leaders: dict[int, int] = field(default_factory=dict)  # term -> node
    top_commit: Commit | None = None
    commits: int = 0
    acked: list[AckedWrite] = field(default_factory=list)
    reads: list[Read] = field(default_factory=list)
    nodes: int = 3
    wiped: list[tuple[float, int]] = field(default_factory=list)  # (time, node) of each lost disk

    def add(self, violation: Violation) -> None:
        if self.report is not None:
            self.report(violation)
        else:
            self.violations.append(violation)

    def record(self, violation: Violation) -> None:
        """Keep a violation that ``report`` accepted (the default report does this itself)."""
        self.violations.append(violation)

    def _add_all(self, violations: Iterable[Violation]) -> None:
        for violation in violations:
            self.add(violation)

    def leader(self, at: float, term: int, node: int) -> None:
        holder = self.leaders.setdefault(term, node)
        if holder != node:
            self.add(Violation("one_leader_per_term", f"nodes {holder} and {node} both led term {term}", at))

    def commit(self, commit: Commit) -> None:
        self.commits += 1
        top = self.top_commit
        if top is not None and commit.term < top.term:
            self._add_all(commits_in_term_order([top, commit]))
        if top is None or commit.term > top.term:
            self.top_commit = commit

    def finish(self, final: Mapping[str, int], archived: set[str], *, at: float) -> None:
        self._add_all(nothing_applied_twice(final, at=at))
        self._add_all(
            acked_writes_kept(self.acked, final, archived, quorum=self.quorum, nodes=self.nodes, wiped=self.wiped, at=at)
        )
        self._add_all(reads_not_stale(self.reads, final, at=at))

    def names(self) -> Counter[str]:
        return Counter(v.invariant for v in self.violations)
