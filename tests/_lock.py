"""Reading the lock files (pip's hash-checking format, as .ci/lock writes them) for the supply-chain tests."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
FULL_LOCK = ROOT / "requirements.lock"
RUNTIME_LOCK = ROOT / "requirements-runtime.lock"


@dataclass(frozen=True)
class Pin:
    version: str
    hashes: frozenset[str]
    applies_here: bool  # its environment marker holds on this machine (or it has none)


def read_lock(path: Path) -> dict[str, Pin]:
    """canonical name -> its pin, from a lock file in pip's hash-checking format."""
    logical = re.sub(r"\\\n\s*", " ", path.read_text())
    pins: dict[str, Pin] = {}
    for line in logical.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        text, *hashes = (part.strip() for part in line.split("--hash="))
        requirement = Requirement(text)
        (specifier,) = requirement.specifier
        assert specifier.operator == "==", f"{path.name}: {text} is not pinned with =="
        assert hashes and all(h.startswith("sha256:") for h in hashes), f"{path.name}: {text} has no sha256 hash"
        applies = requirement.marker is None or requirement.marker.evaluate()
        pins[canonicalize_name(requirement.name)] = Pin(specifier.version, frozenset(hashes), applies)
    return pins
