"""Bugs the simulation found in the core that are not fixed yet, and how a run may tolerate each.

Each finding is written up in docs/simulation.md, "Known findings" (seed, the invariant it breaks, the
diagnosis, the fix). Until it is fixed, a run can *tolerate* it, in one of three visible ways:

- ``avoid``: the fault generator does not produce the faults that trigger it;
- ``known``: its invariants are still checked, but a violation of them counts as *known*, is
  reported as such (per finding), and does not fail the run;
- ``trigger``: the simulation recognises the moment the bug strikes (a node leading alone as it
  starts, say); the run ends there as known, since everything after it follows from it.

A tolerated finding is never silent: the summary line and the test's xfail reason name it and count
what it hid. When a finding is fixed, delete it here; from then on it fails every run again.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Finding:
    name: str
    title: str
    invariants: frozenset[str] = frozenset()  # ``known``: violations of these count as this finding
    avoid_dns_modes: frozenset[str] = frozenset()  # ``avoid``: DNS fault modes not generated
    max_skew: float | None = None  # ``avoid``: clock skews kept within this many seconds
    trigger: str | None = None  # ``trigger``: the event the world recognises (see World.known_trigger)
    only_after_wipe: bool = False  # ``known`` applies only to runs in which a disk was lost
    only_after_counted_out: bool = False  # ... only once a node led having counted out a running member

    @property
    def how(self) -> str:
        parts = []
        if self.trigger:
            parts.append(f"the run ends as known when it sees '{self.trigger}'")
        if self.avoid_dns_modes:
            parts.append(f"no DNS faults {'/'.join(sorted(self.avoid_dns_modes))} generated")
        if self.max_skew is not None:
            parts.append(f"clock skews within {self.max_skew:g} s")
        if self.invariants:
            after = " after a lost disk" if self.only_after_wipe else ""
            after += " once a node led having counted out a running member" if self.only_after_counted_out else ""
            parts.append(f"{'/'.join(sorted(self.invariants))}{after} counted as known")
        return "; ".join(parts)


KNOWN: dict[str, Finding] = {
    f.name: f
    for f in (
        Finding(
            "F8-async-partition-hole",
            "async mode: a node counts out members that run and leads a term another node leads: cut off past "
            "FAILURE_TIMEOUT while its DNS stops listing the others (by design: docs/cluster.md, 'The hole that "
            "remains in async mode'), or restarted on a lost disk while DNS lists nobody (seed 301: it bootstraps alone)",
            invariants=frozenset({"one_leader_per_term", "lease_overlap"}),
            only_after_counted_out=True,
        ),
    )
}
# Fixed on main (05ec5f9), their cases in tests/sim/findings/ kept as regression tests: F1-dns-alone,
# F2-unchecked-apply-wait, F3-token-leeway, F4-min-lsn-divergent, F5-led-alone, F7-amnesiac-voter; fixed on
# branch sim: F9-forwarded-signature-refusal (a follower relayed the leader's 401 for its own signature); and
# F6-token-misattributed on the accounts branch (tokens carry their account's key); F10-follower-stuck-after-one-way-cut
# (a sync request lost on the way was waited for 30 s, the read timeout: now the answer must start within
# the start timeout, cluster/transfer.py).


def resolve(names: list[str] | None) -> list[Finding]:
    """The findings named (``all``: every known one); a ValueError names an unknown one."""
    if not names:
        return []
    if names == ["all"]:
        return list(KNOWN.values())
    unknown = [n for n in names if n not in KNOWN]
    if unknown:
        raise ValueError(f"unknown finding {', '.join(unknown)}; known: {', '.join(KNOWN) or 'none'} (or 'all')")
    return [KNOWN[n] for n in names]


def known_as(invariant: str, findings: list[Finding], *, disk_lost: bool = False, counted_out: bool = False) -> str | None:
    """The tolerated finding a violation of ``invariant`` counts as, if any."""
    return next(
        (
            f.name
            for f in findings
            if invariant in f.invariants
            and (disk_lost or not f.only_after_wipe)
            and (counted_out or not f.only_after_counted_out)
        ),
        None,
    )
