"""One seed, one run: the same seed replays the same trace, whatever ran before it in the process and
whatever PYTHONHASHSEED says."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from talentnest.sim.world import RunConfig, run

SRC = Path(__file__).resolve().parents[2] / "src"
# Faults of every family: a crash, a pause, partitions, message loss and duplicates, DNS, skew.
SEEDS = (3, 8)


def digests(seeds=SEEDS) -> list[tuple[int, str, int]]:
    out = []
    for seed in seeds:
        config = RunConfig(seed=seed, nodes=3, mode="quorum" if seed % 2 else "async", window=7, fail_fast=False)
        result = run(config)
        out.append((seed, result.digest, result.steps))
    return out


def test_a_seed_run_twice_gives_the_same_trace_and_another_seed_another_one():
    first, second = digests(), digests()

    assert first == second
    assert len({digest for _, digest, _ in first}) == len(SEEDS)


def test_the_trace_does_not_depend_on_the_runs_before_it():
    alone = digests((SEEDS[1],))
    after_others = digests(SEEDS)[-1:]

    assert alone == after_others


def test_the_trace_does_not_depend_on_pythonhashseed():
    code = "from tests.sim.test_determinism import digests; print(digests())"
    root = Path(__file__).resolve().parents[2]
    children = [
        subprocess.Popen(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": f"{SRC}:{root}"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=root,
        )
        for hash_seed in ("1", "4242")
    ]
    outputs = set()
    for child in children:
        stdout, stderr = child.communicate(timeout=300)
        assert child.returncode == 0, stderr[-3000:]
        outputs.add(stdout.strip().splitlines()[-1])

    assert len(outputs) == 1, outputs
    assert outputs == {str(digests())}
