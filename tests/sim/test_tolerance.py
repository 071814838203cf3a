"""How a run tolerates a known finding: by not playing its faults, by counting its invariants as
known, or by ending at its trigger; always visibly."""

from __future__ import annotations

from pathlib import Path

from talentnest.sim import findings
from talentnest.sim.faults import Fault, without
from talentnest.sim.invariants import Violation
from talentnest.sim.world import RunConfig, World


def test_avoiding_a_finding_drops_its_dns_faults_and_clamps_skews_and_keeps_the_rest():
    schedule = [
        Fault(3.0, "dns", 2.0, ("n1",), {"mode": "nxdomain"}),
        Fault(4.0, "dns", 2.0, ("n1",), {"mode": "timeout"}),
        Fault(5.0, "skew", 2.0, ("n2",), {"seconds": -20.0}),
        Fault(6.0, "crash", 1.0, ("n3",), {}),
    ]
    kept = without(schedule, dns_modes=frozenset({"nxdomain"}), max_skew=4.0)

    assert [f.kind for f in kept] == ["dns", "skew", "crash"]
    assert kept[0].params["mode"] == "timeout"
    assert kept[1].params["seconds"] == -4.0
    assert kept[2] == schedule[3]


def test_a_known_invariant_counts_only_for_its_finding_and_after_a_lost_disk_if_it_says_so():
    plain = findings.Finding("Fx", "x", invariants=frozenset({"read_your_writes"}))
    disk = findings.Finding("Fy", "y", invariants=frozenset({"acked_write_lost"}), only_after_wipe=True)

    assert findings.known_as("read_your_writes", [plain, disk]) == "Fx"
    assert findings.known_as("acked_write_lost", [plain, disk]) is None
    assert findings.known_as("acked_write_lost", [plain, disk], disk_lost=True) == "Fy"
    assert findings.known_as("lease_overlap", [plain, disk], disk_lost=True) is None


def test_a_tolerated_trigger_ends_the_run_as_known_and_an_untolerated_one_does_nothing(tmp_path: Path):
    world = World(RunConfig(seed=1), tmp_path)
    world.tolerated = [findings.Finding("Fz", "z", trigger="led-alone")]

    assert world.known_trigger("other", "...") is False and world.ended_by is None
    assert world.known_trigger("led-alone", "n1 leads alone") is True
    assert world.ended_by == "Fz" and [name for name, _ in world.known] == ["Fz"]
    assert world._stop()


def test_a_violation_no_tolerated_finding_accounts_for_fails_the_run(tmp_path: Path):
    world = World(RunConfig(seed=1), tmp_path)
    world.tolerated = [findings.Finding("Fx", "x", invariants=frozenset({"read_your_writes"}))]
    world.violation(Violation("read_your_writes", "tolerated"))
    world.violation(Violation("lease_overlap", "not tolerated"))

    assert [name for name, _ in world.known] == ["Fx"]
    assert [v.invariant for v in world.checker.violations] == ["lease_overlap"]
