"""The simulation in CI: 1,000 seeds (a quarter of them 5-node clusters, half in quorum mode) under
every kind of fault, no invariant broken.

Known findings (``sim.findings``) are tolerated, visibly: if any of them struck, the test is an
xfail naming each and how often; a violation no finding accounts for fails it, with each failing
seed's replay command. ``TALENTNEST_SIM_SEEDS`` changes the number of seeds (the long runs).
"""

from __future__ import annotations

import os

import pytest

from talentnest.sim.cli import replay_command
from talentnest.sim.runner import Tally, run_many
from talentnest.sim.world import RunConfig

SEEDS = int(os.environ.get("TALENTNEST_SIM_SEEDS", "1000"))
JOBS = max(2, min(4, os.cpu_count() or 2))


def configs() -> list[RunConfig]:
    return [
        RunConfig(seed=seed, nodes=5 if seed % 4 == 0 else 3, mode="quorum" if seed % 2 else "async", tolerate=("all",))
        for seed in range(1, SEEDS + 1)
    ]


@pytest.mark.timeout(max(900, SEEDS))  # about two minutes on 2 idle cores; a busy machine takes longer
def test_many_seeds_of_3_and_5_node_clusters_break_no_invariant():
    by_seed = {c.seed: c for c in configs()}
    tally = Tally()
    failing = []
    for outcome in run_many(by_seed.values(), jobs=JOBS):
        tally.add(outcome)
        if not outcome.ok:
            failing.append(outcome)
    figures = ", ".join(
        f"{nodes} nodes: {seeds} seeds at {cpu / seeds:.3f} s CPU" for nodes, (seeds, cpu, _) in sorted(tally.by_nodes.items())
    )
    print(f"\nsim: {tally.seeds} seeds, {tally.violations} violations, {tally.steps} steps; {figures}")

    assert tally.seeds == SEEDS
    assert not failing, "\n".join(
        f"seed {o.seed} ({o.nodes} nodes, {o.mode}): {o.violations[0][1]}\n  replay: {replay_command(by_seed[o.seed])}"
        for o in failing[:10]
    )
    if tally.known:
        struck = ", ".join(f"{name} x{n}" for name, n in sorted(tally.known.items()))
        pytest.xfail(f"known findings struck and were tolerated: {struck}")
