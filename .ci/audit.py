"""Audit requirements.lock with pip-audit: fail on a known vulnerability; warn and pass when the
vulnerability service cannot be reached (or answers for none of the packages).

    python .ci/audit.py [requirements.lock]

Exit status: 0 when nothing known-vulnerable was found (or nothing could be checked, with a
warning saying so), 1 when a locked package has a known vulnerability.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 300


def warn(text: str) -> None:
    print(f"==> WARNING: {text}", file=sys.stderr)


def main() -> int:
    lock = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "requirements.lock"
    if not lock.is_file():
        print(f"audit: {lock} does not exist; generate it with .ci/lock.py", file=sys.stderr)
        return 2
    command = [
        sys.executable, "-m", "pip_audit", "--requirement", str(lock), "--no-deps", "--disable-pip",
        "--format", "json", "--progress-spinner", "off",
    ]  # fmt: skip
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        warn(f"pip-audit did not finish within {TIMEOUT} s; the vulnerability service is probably unreachable. Not audited.")
        return 0
    try:
        report = json.loads(result.stdout)
    except ValueError:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        warn(f"pip-audit could not reach the vulnerability service ({last}). {lock.name} was not audited.")
        return 0
    return verdict(report, lock.name)


def verdict(report: dict, lock_name: str) -> int:
    """Print what pip-audit's JSON ``report`` means; the exit status (1: something is vulnerable)."""
    packages = report.get("dependencies", [])
    skipped = [p for p in packages if p.get("skip_reason")]
    vulnerable = [p for p in packages if p.get("vulns")]
    for package in vulnerable:
        for vuln in package["vulns"]:
            fixed = ", ".join(vuln.get("fix_versions") or []) or "no fixed version yet"
            print(f"VULNERABLE {package['name']}=={package['version']}: {vuln['id']} (fixed in {fixed})")
    audited = len(packages) - len(skipped)
    if vulnerable:
        print(f"==> pip-audit: {len(vulnerable)} of {audited} audited packages have known vulnerabilities", file=sys.stderr)
        return 1
    if packages and audited == 0:
        warn(
            f"the vulnerability service answered for none of the {len(packages)} packages in {lock_name} "
            f"(first: {skipped[0]['skip_reason']}); it is probably unreachable from here. Not audited."
        )
        return 0
    for package in skipped:
        warn(f"not audited: {package['name']}=={package['version']}: {package['skip_reason']}")
    print(f"==> pip-audit: no known vulnerabilities in {audited} packages of {lock_name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
