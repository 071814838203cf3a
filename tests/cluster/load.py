"""A test's clients under fault: writers and signups through the live nodes, and the checks made after them.

``busy(cluster)`` starts writers (numbered posts with Idempotency-Keys) and a signup stream through
every live node (or those ``through`` picks); ``Load.check`` stops them, waits for one leader and
equal checksums, reads everything back and fails the test with every violated invariant.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

from tests.cluster import invariants
from tests.cluster.harness import Cluster, Node, wait_until
from tests.cluster.workload import (
    Signups,
    Target,
    Writers,
    leader_claims,
    sign_up,
    stored_contents,
    stored_usernames,
    who_is,
)


def target(node: Node) -> Target:
    return Target(node.name, node.url)


class Load:
    """Writers and signups running against a cluster; ``check`` judges what they were told."""

    def __init__(self, cluster: Cluster, *, writers: int = 2, through: Callable[[Node], bool] | None = None, prefix: str = "w"):
        self.cluster = cluster
        pick = through or (lambda node: True)

        def targets() -> list[Target]:
            return [target(node) for node in cluster.live_nodes() if pick(node)]

        self.authors = [f"{prefix}author{i}" for i in range(writers)]
        tokens = [sign_up(targets, author).token for author in self.authors]
        self.writers = Writers(targets, tokens, prefix=prefix, give_up_after=90)
        self.signups = Signups(targets, prefix=f"{prefix}member", give_up_after=90)

    def start(self) -> Load:
        self.writers.start()
        self.signups.start()
        return self

    def acknowledged(self) -> int:
        return len(self.writers.acknowledged)

    def wait_for_progress(self, writes: int = 10, timeout: float = 30.0) -> None:
        """Wait until ``writes`` more writes have been acknowledged from now."""
        goal = self.acknowledged() + writes
        wait_until(
            lambda: self.acknowledged() >= goal,
            timeout=timeout,
            what=f"{writes} more acknowledged writes (now {self.acknowledged()}, answers {dict(self.writers.answers)}, "
            f"client errors {self.writers.error!r} {self.signups.error!r})",
            report=self.cluster.report,
        )

    def stop(self) -> None:
        self.writers.finish()
        self.signups.finish()

    def check(self, *, quorum: bool = False, archived: str = "", allow_server_errors: bool = False) -> None:
        """Stop the clients; then one leader, equal data at the same LSN on every live node, and none of
        the invariants broken. ``archived``: the archives' text, where async mode may keep a lost write."""
        self.stop()
        cluster = self.cluster
        for client in (self.writers, self.signups):
            assert client.error is None, f"a client failed: {client.error!r}\n{cluster.report()}"
        leader = cluster.wait_for_leader(timeout=30)
        positions = wait_for_convergence(cluster)
        stored = stored_contents(target(leader), self.authors)
        accounts = list(self.signups.accounts)
        held = stored_usernames(target(leader), [a.username for a in accounts])
        answers = [
            (a.username, node.name, *who_is(target(node), a.token)) for a in accounts[-20:] for node in cluster.live_nodes()
        ]
        violations = [
            *invariants.acknowledged_writes_kept(self.writers.acknowledged, stored, quorum=quorum, archived=archived),
            *invariants.acknowledged_writes_kept(
                [a.username for a in accounts], {u: 1 for u, i in held.items() if i is not None}, quorum=quorum, archived=archived
            ),
            *invariants.nothing_applied_twice(stored),
            *invariants.one_leader_per_term(leader_claims({n.name: n.logs() for n in cluster.nodes})),
            *invariants.tokens_not_misattributed(answers),
            *invariants.converged(positions),
        ]
        unexpected = [*self.writers.unexpected, *self.signups.unexpected]
        errors = [u for u in unexpected if not (allow_server_errors and u.status >= 500)]
        summary = (
            f"{len(self.writers.acked)} writes and {len(accounts)} signups acknowledged; answers {dict(self.writers.answers)}"
        )
        print(summary)
        assert not violations, "\n".join(map(str, violations[:20])) + f"\n{summary}\n{cluster.report()}"
        assert not errors, f"answers a careful client cannot act on: {errors[:10]}\n{summary}\n{cluster.report()}"


def wait_for_convergence(cluster: Cluster, timeout: float = 30.0) -> dict[str, tuple[str, int]]:
    """Wait until every live node reports the same checksum at the same LSN; name -> (checksum, LSN)."""
    seen: dict[str, tuple[str, int]] = {}

    def same() -> bool:
        seen.clear()
        for node in cluster.live_nodes():
            try:
                answer = node.checksum()
            except Exception as exc:  # a node that cannot answer has not converged
                seen[node.name] = (f"no answer: {exc}", -1)
                continue
            seen[node.name] = (answer["checksum"], answer["applied_lsn"])
        return len(set(seen.values())) == 1

    what = "every node at the same LSN with the same checksum"
    wait_until(same, timeout=timeout, what=what, report=lambda: f"{seen}\n{cluster.report()}")
    return dict(seen)


@contextlib.contextmanager
def busy(cluster: Cluster, **options) -> Iterator[Load]:
    """Clients writing and signing up for the duration of the block; stopped whatever happens."""
    load = Load(cluster, **options).start()
    try:
        load.wait_for_progress()
        yield load
    finally:
        load.stop()


def watch(duration: float, observe: Callable[[], None], interval: float = 0.2) -> None:
    """Call ``observe`` (which asserts) every ``interval`` for ``duration`` seconds: a property that must
    hold throughout a fault, not a wait."""
    until = time.monotonic() + duration
    while time.monotonic() < until:
        observe()
        time.sleep(interval)
