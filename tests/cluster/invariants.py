"""The promises of issue 15 as checks over what clients and nodes were seen to do; each returns its violations.

Shared by the cluster tests and ``benchmarks/nemesis.py`` (and written over plain values, so that the
simulation can share them too): no acknowledged write lost (in async mode, one lost is allowed only
when a divergence archive holds it), none applied twice, one leader per term, a token that never acts
as another account, every node holding the same data at the same LSN.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Violation:
    invariant: str
    detail: str

    def __str__(self) -> str:
        return f"{self.invariant}: {self.detail}"


def acknowledged_writes_kept(
    acknowledged: Iterable[str], stored: Mapping[str, int], *, quorum: bool, archived: str = ""
) -> list[Violation]:
    """Every acknowledged content is stored; in async mode a missing one must appear in ``archived``."""
    violations = []
    for content in acknowledged:
        if stored.get(content, 0) > 0:
            continue
        if quorum:
            violations.append(Violation("acked_write_lost", f"'{content}' was acknowledged and is not stored"))
        elif f'"{content}"' not in archived:
            detail = f"'{content}' was acknowledged, is not stored, and no archive holds it"
            violations.append(Violation("acked_write_lost_unarchived", detail))
    return violations


def lost_but_archived(acknowledged: Iterable[str], stored: Mapping[str, int], archived: str) -> list[str]:
    """The acknowledged contents that are not stored but are in an archive (async mode's allowed loss)."""
    return [c for c in acknowledged if stored.get(c, 0) == 0 and f'"{c}"' in archived]


def not_lost_from_a_majority(lost: Iterable[str], archives: Mapping[str, str]) -> list[Violation]:
    """A lost write archived by a majority of nodes was held by a majority: async mode's window (a deposed
    leader's last writes, which only it held) does not cover it. ``archives``: node -> its archives' text."""
    majority = len(archives) // 2 + 1
    violations = []
    for content in lost:
        holders = sorted(node for node, text in archives.items() if f'"{content}"' in text)
        if len(holders) >= majority:
            violations.append(Violation("majority_write_lost", f"'{content}' was held by {', '.join(holders)} and is lost"))
    return violations


def nothing_applied_twice(stored: Mapping[str, int]) -> list[Violation]:
    return [Violation("applied_twice", f"'{content}' is stored {count} times") for content, count in stored.items() if count > 1]


def leaders_by_term(claims: Iterable[tuple[int, str]]) -> dict[int, set[str]]:
    """term -> the nodes that claimed to lead it."""
    by_term: dict[int, set[str]] = defaultdict(set)
    for term, node in claims:
        by_term[term].add(node)
    return dict(by_term)


def one_leader_per_term(claims: Iterable[tuple[int, str]]) -> list[Violation]:
    return [
        Violation("one_leader_per_term", f"term {term} was led by {', '.join(sorted(nodes))}")
        for term, nodes in sorted(leaders_by_term(claims).items())
        if len(nodes) > 1
    ]


def tokens_not_misattributed(answers: Iterable[tuple[str, str, int, str | None]]) -> list[Violation]:
    """``answers``: (account's username, node asked, status of /api/auth/me, username answered).

    A token answered 200 for another account is misattributed (a 401 for a lost account is fine)."""
    return [
        Violation("token_misattributed", f"the token of '{owner}' answered as '{answered}' on {node}")
        for owner, node, status, answered in answers
        if status == 200 and answered != owner
    ]


def converged(positions: Mapping[str, tuple[str, int]]) -> list[Violation]:
    """``positions``: node -> (checksum, applied LSN). Every node must hold the same data at the same LSN."""
    if len(set(positions.values())) <= 1:
        return []
    shown = "; ".join(f"{name}: LSN {lsn}, {checksum[:12]}" for name, (checksum, lsn) in sorted(positions.items()))
    return [Violation("not_converged", shown)]


def summary(violations: Iterable[Violation]) -> Counter:
    return Counter(v.invariant for v in violations)
