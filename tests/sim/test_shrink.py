"""Shrinking a failing schedule: delta debugging keeps the faults that together still break the invariant."""

from __future__ import annotations

from dataclasses import replace

from talentnest.sim.faults import Fault
from talentnest.sim.invariants import Violation
from talentnest.sim.shrink import shrink
from talentnest.sim.world import Result, RunConfig


def fault(at: float, kind: str = "crash", node: str = "n1") -> Fault:
    return Fault(at, kind, 1.0, (node,), {})


def fake_runner(culprits: set[float]):
    """Fails (breaks 'x') exactly when every fault whose start time is in ``culprits`` is scheduled."""

    def runner(config: RunConfig) -> Result:
        present = {f.at for f in config.faults}
        violations = [Violation("x", "broken")] if culprits <= present else []
        return Result(config, list(config.faults), violations, 0, 0.0, 0.0, "", [], [])

    return runner


def test_two_culprits_among_ten_faults_are_found():
    faults = [fault(float(t)) for t in range(3, 13)]
    smallest, runs = shrink(RunConfig(seed=1), faults, "x", runner=fake_runner({5.0, 11.0}))

    assert [f.at for f in smallest] == [5.0, 11.0]
    assert runs < 40


def test_a_failure_without_any_fault_shrinks_to_the_empty_schedule():
    smallest, _ = shrink(RunConfig(seed=1), [fault(3.0), fault(4.0)], "x", runner=fake_runner(set()))

    assert smallest == []


def test_a_real_failing_schedule_shrinks_to_faults_that_still_break_the_invariant():
    # Mutant vote-not-persisted breaks vote_not_durable at the first election, with or without faults.
    config = RunConfig(seed=5, mutant="vote-not-persisted")
    faults = config.schedule()
    smallest, _ = shrink(config, faults, "vote_not_durable")

    assert smallest == []
    from talentnest.sim.world import run

    assert any(v.invariant == "vote_not_durable" for v in run(replace(config, faults=())).violations)
