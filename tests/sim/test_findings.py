"""Each bug the simulation found, replayed from its shortest schedule.

Each test asserts what must hold (the run is clean). A fixed finding's case must pass (a regression
test); an open one (``sim.findings``, docs/simulation.md "Known findings") is a strict xfail naming it:
once the bug is fixed it passes, which a strict xfail reports as a failure, so the finding is removed then.
The other known findings are tolerated in each replay, so only this one can fail it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from talentnest.sim import faults as faults_mod
from talentnest.sim import findings
from talentnest.sim.world import RunConfig, run

HERE = Path(__file__).parent / "findings"
CASES = sorted(HERE.glob("*.json"))


def replay(case: dict, *, tolerate_it: bool):
    others = tuple(name for name in findings.KNOWN if tolerate_it or name != case["finding"])
    config = RunConfig(
        seed=case["seed"],
        nodes=case["nodes"],
        mode=case["mode"],
        faults=tuple(faults_mod.Fault.from_json(f) for f in case["faults"]),
        window=case["window"],
        tolerate=others,
    )
    return run(config)


def _case(path: Path):
    case = json.loads(path.read_text())
    finding = findings.KNOWN.get(case["finding"])
    marks = []
    if finding is not None:
        marks.append(pytest.mark.xfail(strict=True, reason=f"{finding.name}: {finding.title}"))
    return pytest.param(case, id=case["finding"], marks=marks)


@pytest.mark.parametrize("case", [_case(p) for p in CASES])
def test_the_finding_no_longer_breaks_its_invariant(case):
    result = replay(case, tolerate_it=False)

    assert result.ok, f"{case['finding']} still breaks {case['invariant']}: {result.first}"


def test_every_known_finding_has_a_replayable_case_that_breaks_what_it_says():
    cases = {json.loads(p.read_text())["finding"]: json.loads(p.read_text()) for p in CASES}
    assert set(findings.KNOWN) <= set(cases), f"findings without a case in {HERE}: {set(findings.KNOWN) - set(cases)}"
    for name, case in cases.items():
        if name not in findings.KNOWN:
            continue
        broken = replay(case, tolerate_it=False)
        assert case["invariant"] in {v.invariant for v in broken.violations}, (name, broken.violations)
        tolerated = replay(case, tolerate_it=True)
        # Tolerated, it is either counted as known or its triggering faults are not played.
        avoided = [f.to_json() for f in tolerated.faults] != case["faults"]
        assert tolerated.ok and (tolerated.known or avoided), (name, tolerated.violations, tolerated.known)
