"""The supply chain: the lock files pin the whole closure of pyproject.toml with hashes, this environment
runs exactly those versions, the image's lock is the runtime part of CI's, and the CI audit step fails
on a known vulnerability but only warns when the vulnerability service is out of reach."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests._lock import FULL_LOCK, ROOT, RUNTIME_LOCK, read_lock


def ci_module(name: str):
    spec = importlib.util.spec_from_file_location(f"ci_{name}", ROOT / ".ci" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _closure(roots: list[Requirement]) -> set[str]:
    """Every distribution ``roots`` need on this machine, by installed metadata (with extras)."""
    seen: set[tuple[str, frozenset[str]]] = set()
    names: set[str] = set()
    pending = [(requirement, frozenset()) for requirement in roots]
    while pending:
        requirement, parent_extras = pending.pop()
        environments = [{"extra": extra} for extra in parent_extras | {""}]
        if requirement.marker is not None and not any(requirement.marker.evaluate(env) for env in environments):
            continue
        key = (canonicalize_name(requirement.name), frozenset(requirement.extras))
        if key in seen:
            continue
        seen.add(key)
        names.add(key[0])
        requires = metadata.distribution(requirement.name).requires or ()
        pending.extend((Requirement(text), frozenset(requirement.extras)) for text in requires)
    return names


def test_every_pin_is_exact_and_hashed():
    for lock in (FULL_LOCK, RUNTIME_LOCK):
        assert len(read_lock(lock)) > 30, f"{lock.name} looks empty"


def test_the_lock_pins_every_dependency_of_pyproject_within_its_range():
    locked = read_lock(FULL_LOCK)
    project = _project()
    for text in [*project["dependencies"], *project["optional-dependencies"]["test"]]:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{name} is in pyproject.toml but not in requirements.lock: run .ci/lock"
        assert requirement.specifier.contains(locked[name].version, prereleases=True), (
            f"{name}=={locked[name].version} is outside pyproject.toml's {requirement.specifier}: run .ci/lock"
        )


@pytest.mark.parametrize(
    ("lock", "extras"), [(FULL_LOCK, ["test"]), (RUNTIME_LOCK, [])], ids=["requirements.lock", "requirements-runtime.lock"]
)
def test_each_lock_holds_exactly_the_closure_of_pyproject(lock: Path, extras: list[str]):
    project = _project()
    roots = [Requirement(text) for text in project["dependencies"]]
    for extra in extras:
        roots += [Requirement(text) for text in project["optional-dependencies"][extra]]
    wanted = _closure(roots) - {canonicalize_name(project["name"])}
    here = {name for name, pin in read_lock(lock).items() if pin.applies_here}
    assert here >= wanted, f"{lock.name} lacks {sorted(wanted - here)}: run .ci/lock"
    assert here <= wanted, f"{lock.name} pins what nothing needs: {sorted(here - wanted)}: run .ci/lock"


def test_the_image_lock_is_the_runtime_part_of_what_ci_tests():
    full, runtime = read_lock(FULL_LOCK), read_lock(RUNTIME_LOCK)
    different = {name: (pin.version, full[name].version if name in full else None) for name, pin in runtime.items()
                 if name not in full or full[name] != pin}  # fmt: skip
    assert not different, f"requirements-runtime.lock differs from requirements.lock (runtime, full): {different}"


def test_this_environment_runs_the_locked_versions():
    """./dev installs requirements.lock with --require-hashes: what the tests run on is what is locked."""
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in metadata.distributions()}
    locked = {name: pin.version for name, pin in read_lock(FULL_LOCK).items() if pin.applies_here}
    different = {name: (version, installed.get(name)) for name, version in locked.items() if installed.get(name) != version}
    assert not different, f"locked vs installed: {different}; ./dev reinstalls from the lock when it changes"


def test_the_lock_script_uses_a_resolver_that_writes_hashes():
    script = (ROOT / ".ci" / "lock").read_text()
    assert "uv pip compile" in script.replace('"$UV"', "uv") and "--generate-hashes" in script
    for lock in (FULL_LOCK, RUNTIME_LOCK):
        assert "#    .ci/lock" in lock.read_text().splitlines()[1], f"{lock.name} was not made by .ci/lock"


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


def test_the_audit_reads_the_hashed_lock(tmp_path):
    """pip-audit is given the real lock file (hashes and continuation lines) and parses every pin of it."""
    command = [sys.executable, "-m", "pip_audit", "--requirement", str(RUNTIME_LOCK), "--no-deps", "--disable-pip",
               "--dry-run", "--progress-spinner", "off"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert f"Dry run: would have audited {len(read_lock(RUNTIME_LOCK))} packages" in result.stdout + result.stderr


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
