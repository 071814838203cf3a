"""Shrinking a failing schedule: delta debugging (Zeller's ddmin) over its faults.

A candidate schedule is a subset of the failing one, run on the same seed. The clients, the network's
per-link delays and the nodes' randomness come from their own seeded streams, so a run without some
faults keeps the rest of the run as aligned as a changed history allows. A candidate "still fails"
when it breaks the same invariant as the original run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from talentnest.sim.faults import Fault
from talentnest.sim.world import Result, RunConfig, run


def shrink(
    config: RunConfig,
    faults: list[Fault],
    invariant: str,
    *,
    runner: Callable[[RunConfig], Result] = run,
    budget: int = 200,
    progress: Callable[[str], None] | None = None,
) -> tuple[list[Fault], int]:
    """The smallest subset of ``faults`` found that still breaks ``invariant``, and the runs it took."""
    runs = 0
    tried: dict[tuple[int, ...], bool] = {}
    index = {id(f): i for i, f in enumerate(faults)}

    def fails(candidate: list[Fault]) -> bool:
        nonlocal runs
        key = tuple(sorted(index[id(f)] for f in candidate))
        if key in tried:
            return tried[key]
        runs += 1
        result = runner(replace(config, faults=tuple(candidate), keep=None))
        broken = tried[key] = any(v.invariant == invariant for v in result.violations)
        if progress is not None:
            progress(f"shrink: {len(candidate)} faults {'still fail' if broken else 'pass'} ({runs} runs)")
        return broken

    current = list(faults)
    if not current:
        return current, runs
    if fails([]):
        return [], runs
    granularity = 2
    while len(current) >= 2 and runs < budget:
        size = max(1, len(current) // granularity)
        chunks = [current[i : i + size] for i in range(0, len(current), size)]
        reduced = False
        for chunk in chunks:
            if runs >= budget:
                break
            if fails(chunk):
                current, granularity, reduced = chunk, 2, True
                break
        if not reduced:
            for i in range(len(chunks)):
                if runs >= budget:
                    break
                complement = [f for j, c in enumerate(chunks) if j != i for f in c]
                if complement and fails(complement):
                    current, granularity, reduced = complement, max(granularity - 1, 2), True
                    break
        if not reduced:
            if granularity >= len(current):
                break
            granularity = min(len(current), granularity * 2)
    return current, runs
