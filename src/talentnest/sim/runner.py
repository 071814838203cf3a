"""Many seeds: run them (in worker processes with ``jobs``), report progress, gather the outcomes.

A worker sends back a small ``Outcome`` per seed; a failing seed is run again in the caller when its
details are needed (it is deterministic, so the second run is the first one again).
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from talentnest.sim.world import RunConfig, run


@dataclass(frozen=True)
class Outcome:
    seed: int
    nodes: int
    mode: str
    violations: tuple[tuple[str, str], ...]  # (invariant, text)
    known: tuple[tuple[str, str], ...]  # (finding, text)
    steps: int
    virtual_seconds: float
    cpu_seconds: float
    digest: str
    faults: int

    @property
    def ok(self) -> bool:
        return not self.violations


def outcome_of(config: RunConfig) -> Outcome:
    started = time.process_time()
    result = run(config)
    return Outcome(
        seed=config.seed,
        nodes=config.nodes,
        mode=config.mode,
        violations=tuple((v.invariant, str(v)) for v in result.violations),
        known=tuple((name, str(v)) for name, v in result.known),
        steps=result.steps,
        virtual_seconds=result.virtual_seconds,
        cpu_seconds=time.process_time() - started,
        digest=result.digest,
        faults=len(result.faults),
    )


@dataclass
class Tally:
    seeds: int = 0
    failed: int = 0
    violations: int = 0
    known: dict[str, int] = field(default_factory=dict)
    steps: int = 0
    virtual_seconds: float = 0.0
    cpu_seconds: float = 0.0
    by_nodes: dict[int, list[float]] = field(default_factory=dict)  # nodes -> [seeds, cpu seconds, steps]

    def add(self, outcome: Outcome) -> None:
        self.seeds += 1
        self.failed += not outcome.ok
        self.violations += len(outcome.violations)
        for name, _ in outcome.known:
            self.known[name] = self.known.get(name, 0) + 1
        self.steps += outcome.steps
        self.virtual_seconds += outcome.virtual_seconds
        self.cpu_seconds += outcome.cpu_seconds
        row = self.by_nodes.setdefault(outcome.nodes, [0, 0.0, 0])
        row[0] += 1
        row[1] += outcome.cpu_seconds
        row[2] += outcome.steps


def run_many(
    configs: Iterable[RunConfig], *, jobs: int = 1, on_outcome: Callable[[Outcome], None] | None = None
) -> Iterator[Outcome]:
    """Each config's outcome, in the order given."""
    configs = list(configs)
    if jobs <= 1 or len(configs) <= 1:
        for config in configs:
            outcome = outcome_of(config)
            if on_outcome is not None:
                on_outcome(outcome)
            yield outcome
        return
    context = multiprocessing.get_context("fork")
    with context.Pool(jobs) as pool:
        for outcome in pool.imap(outcome_of, configs, chunksize=4):
            if on_outcome is not None:
                on_outcome(outcome)
            yield outcome
