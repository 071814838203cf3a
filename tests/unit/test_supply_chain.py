"""The supply chain: requirements.lock pins exactly what this environment runs, and the CI audit
step fails on a known vulnerability but only warns when the vulnerability service is out of reach."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]


def ci_module(name: str):
    spec = importlib.util.spec_from_file_location(f"ci_{name}", ROOT / ".ci" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pins(text: str) -> dict[str, str]:
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    return dict(line.split("==", 1) for line in lines)


def test_the_lock_pins_every_dependency_of_pyproject():
    locked = pins((ROOT / "requirements.lock").read_text())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

    for text in [*project["dependencies"], *project["optional-dependencies"]["test"]]:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{name} is in pyproject.toml but not in requirements.lock"
        assert requirement.specifier.contains(locked[name], prereleases=True), (name, locked[name], str(requirement.specifier))


def test_the_lock_is_what_this_environment_has_installed():
    generated = subprocess.run([sys.executable, str(ROOT / ".ci" / "lock.py")], capture_output=True, text=True, check=True)

    assert pins(generated.stdout) == pins((ROOT / "requirements.lock").read_text()), (
        "requirements.lock is stale: regenerate it with `python .ci/lock.py > requirements.lock`"
    )


REPORTS = {
    "a vulnerable package": (
        {"dependencies": [{"name": "jinja2", "version": "2.10", "vulns": [{"id": "PYSEC-2019-217", "fix_versions": ["2.10.1"]}]},
                          {"name": "idna", "version": "3.20", "vulns": []}]},
        1, "VULNERABLE jinja2==2.10: PYSEC-2019-217 (fixed in 2.10.1)",
    ),
    "nothing known": (
        {"dependencies": [{"name": "idna", "version": "3.20", "vulns": []}]},
        0, "no known vulnerabilities in 1 packages",
    ),
    "service out of reach": (
        {"dependencies": [{"name": "idna", "version": "3.20", "skip_reason": "Dependency not found on PyPI"}]},
        0, "WARNING: the vulnerability service answered for none",
    ),
    "some not audited": (
        {"dependencies": [{"name": "idna", "version": "3.20", "vulns": []},
                          {"name": "private", "version": "1.0", "skip_reason": "Dependency not found on PyPI"}]},
        0, "WARNING: not audited: private==1.0",
    ),
}  # fmt: skip


@pytest.mark.parametrize("report, status, said", REPORTS.values(), ids=REPORTS.keys())
def test_the_audit_fails_only_on_a_known_vulnerability(capsys, report: dict, status: int, said: str):
    assert ci_module("audit").verdict(report, "requirements.lock") == status

    out, err = capsys.readouterr()
    assert said in out + err


def test_the_audit_refuses_a_missing_lock(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / ".ci" / "audit.py"), str(tmp_path / "nope.lock")], capture_output=True)

    assert result.returncode == 2 and b"does not exist" in result.stderr


def test_every_package_the_code_imports_is_a_declared_runtime_dependency():
    """A module imported by src/ but installed only by chance (in a developer's venv) breaks a fresh install."""
    import ast
    from importlib.metadata import packages_distributions

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {canonicalize_name(Requirement(text).name) for text in project["dependencies"]}
    declared |= {canonicalize_name(Requirement(text).name) for text in ["uvloop", "httptools"]}  # uvicorn[standard]
    providers = packages_distributions()
    undeclared = set()
    for path in (ROOT / "src" / "talentnest").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top == "talentnest" or top in sys.stdlib_module_names:
                    continue
                distributions = {canonicalize_name(d) for d in providers.get(top, [top])}
                if not distributions & declared:
                    undeclared.add(f"{top} ({path.relative_to(ROOT)})")
    assert not undeclared, f"imported but not in pyproject.toml dependencies: {sorted(undeclared)}"
