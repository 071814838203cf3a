"""The short version of ``benchmarks/nemesis.py``: 60 s of random faults (1-5 s each) on 3 nodes in quorum mode, nothing lost.

Run as a user runs it (its own process, its command line, its exit code and JSON), with a fixed seed
so that every kind of fault is played at least once (each round plays every kind in a random order).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.cluster.harness import ROOT, TEST_SUBNET
from tests.cluster.hazards import missing_tool

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


# Each node's tmpfs holds the run's data (about 2 KiB per idempotent write: the row, its log entry, the
# kept answer and the key's claim), a WAL held back by long reads, and a snapshot being sent or received.
# The disk fault fills whatever is free whatever the size; 64 MiB left a fast run's own data filling
# the disk for good (CI, December 2026), which is a test sized for a slower machine, not a fault.
DISK_MIB = 128


def test_60_s_of_random_faults_on_3_nodes_in_quorum_mode_lose_no_acknowledged_write_and_converge(tmp_path):
    output = tmp_path / "nemesis.json"
    command = [
        sys.executable,
        str(ROOT / "benchmarks" / "nemesis.py"),
        *("--minutes", "1", "--nodes", "3", "--mode", "quorum", "--seed", "7", "--writers", "2", "--fault-seconds", "1", "5"),
        *("--checkpoint-minutes", "0", "--disk-mib", str(DISK_MIB), "--subnet", TEST_SUBNET, "--output", str(output)),
    ]
    run = subprocess.run(command, capture_output=True, text=True, timeout=270, cwd=ROOT)
    if run.returncode == 2:
        missing_tool(run.stderr.strip())
    shown = f"exit {run.returncode}\n{run.stdout[-6000:]}\n{run.stderr[-3000:]}"
    assert output.exists(), shown
    result = json.loads(output.read_text())
    assert run.returncode == 0 and result["passed"], shown
    assert all(result["faults"][kind] >= 1 for kind in result["faults"]), f"a kind of fault was never played: {result['faults']}"
    # Enough acknowledged work for the checks below to mean something: how much a minute of faults lets
    # through depends on the machine's load (25 writes and 1 signup were seen at a load average of 15).
    assert result["writes_acknowledged"] >= 10 and result["signups_acknowledged"] >= 1, shown
    assert result["lost"] == 0 and result["misattributed"] == 0 and result["max_leaders_per_term"] == 1, shown
    assert result["server_errors"] == 0, shown
    assert result["converge_seconds_after_last_fault"] is not None, shown
