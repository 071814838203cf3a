"""The simulation can fail: each deliberately broken variant of the core is caught, and the same seed
passes without it. (Where each is first caught in 5,000 seeds: docs/simulation.md.)"""

from __future__ import annotations

import pytest

from talentnest.cluster.node import ClusterNode
from talentnest.sim import mutants
from talentnest.sim.world import RunConfig, run

# mutant -> (nodes, mode, first seed to try, the invariants expected to catch it). The first seeds
# come from `talentnest sim --mutant NAME --seeds 5000 --tolerate all`; a change in the core may
# move the catch a few seeds later, which the search below allows.
CATCHES = {
    "vote-not-persisted": (3, "async", 1, {"vote_not_durable", "one_leader_per_term"}),
    "lease-outlives-timeout": (3, "async", 18, {"lease_overlap"}),
    "apply-skips-lsn-check": (3, "async", 24, {"lsn_backwards", "no_convergence", "divergent_not_archived"}),
    "candidate-ignores-log-freshness": (3, "quorum", 35, {"acked_write_lost", "divergent_not_archived", "no_convergence"}),
    "ack-before-commit": (3, "quorum", 1, {"ack_beyond_commit", "acked_write_lost"}),
    "carried-unchecked": (3, "async", 37, {"divergent_not_archived", "acked_write_lost", "no_convergence"}),
}
SEARCH = 25


def test_every_mutant_has_an_expected_catch():
    assert set(CATCHES) == set(mutants.MUTANTS)


@pytest.mark.parametrize("name", sorted(mutants.MUTANTS))
def test_the_mutant_is_caught_and_the_same_seed_passes_without_it(name: str):
    nodes, mode, first, expected = CATCHES[name]
    tried = []
    for seed in range(first, first + SEARCH):
        config = RunConfig(seed=seed, nodes=nodes, mode=mode, mutant=name, tolerate=("all",))
        broken = run(config)
        tried.append((seed, broken.first.invariant if broken.first else None))
        if broken.first is not None and broken.first.invariant in expected:
            clean = run(RunConfig(seed=seed, nodes=nodes, mode=mode, tolerate=("all",)))
            assert clean.ok, f"seed {seed} fails without {name} too: {clean.first}"
            return
    pytest.fail(f"{name} not caught by {sorted(expected)} in seeds {first}-{first + SEARCH - 1}: {tried}")


def test_a_mutant_is_undone_after_its_run():
    original = ClusterNode.record_vote
    with mutants.applied("vote-not-persisted"):
        assert ClusterNode.record_vote is not original
    assert ClusterNode.record_vote is original


def test_an_unknown_mutant_is_refused():
    with pytest.raises(ValueError, match="unknown mutant 'nope'"), mutants.applied("nope"):
        pass
