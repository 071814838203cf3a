"""``talentnest sim`` as a user runs it: the summary line last, exit status 1 on a violation with the
replay command and the shrunk schedule, which replays to the same violation."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
SUMMARY = re.compile(r"^sim: (\d+) seeds, (\d+) violations.*, (\d+) steps, [\d.]+ s$")


def sim(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    return subprocess.run(
        [sys.executable, "-m", "talentnest", "sim", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=600
    )


def test_a_clean_run_exits_0_with_the_summary_line_last(tmp_path: Path):
    result = sim("--seeds", "3", "--seed", "2", "--window", "6", "--tolerate", "all", cwd=tmp_path)

    assert result.returncode == 0, result.stdout + result.stderr
    last = result.stdout.strip().splitlines()[-1]
    match = SUMMARY.match(last)
    assert match, last
    assert match.group(1) == "3" and match.group(2) == "0" and int(match.group(3)) > 1000
    assert "3 nodes: 3 seeds" in result.stdout


def test_a_violation_exits_1_with_the_replay_command_and_a_shrunk_schedule_that_replays_it(tmp_path: Path):
    result = sim("--seeds", "1", "--mutant", "vote-not-persisted", "--window", "6", "--save", "out", cwd=tmp_path)

    assert result.returncode == 1, result.stdout + result.stderr
    out = result.stdout
    assert "FAIL seed 1 (3 nodes, async): vote_not_durable" in out
    assert "replay: talentnest sim --seed 1 --nodes 3 --mode async --mutant vote-not-persisted --window 6" in out
    assert "shortest schedule that still breaks vote_not_durable" in out
    assert SUMMARY.match(out.strip().splitlines()[-1]).group(2) != "0"
    saved = tmp_path / "out" / "seed-1-3-async-vote-not-persisted.json"
    assert saved.is_file()

    replay = ("--seed", "1", "--mutant", "vote-not-persisted", "--window", "6", "--schedule", str(saved), "--no-shrink")
    again = sim(*replay, cwd=tmp_path)
    assert again.returncode == 1
    assert "VIOLATION vote_not_durable" in again.stdout


def test_list_mutants_names_each_with_what_it_breaks(tmp_path: Path):
    from talentnest.sim.mutants import MUTANTS

    result = sim("--list-mutants", cwd=tmp_path)

    assert result.returncode == 0
    for name in MUTANTS:
        assert f"{name}\n" in result.stdout
    assert result.stdout.count("breaks:") == len(MUTANTS)


def test_a_bad_argument_is_one_clear_error(tmp_path: Path):
    unknown = sim("--mutant", "no-such-thing", cwd=tmp_path)
    assert unknown.returncode == 2
    assert "unknown mutant 'no-such-thing'" in unknown.stderr

    nodes = sim("--nodes", "4", cwd=tmp_path)
    assert nodes.returncode == 2
    assert "--nodes: must be 3 or 5" in nodes.stderr

    schedule = sim("--seeds", "5", "--schedule", "x.json", cwd=tmp_path)
    assert schedule.returncode == 2
    assert "--schedule replays one seed" in schedule.stderr
