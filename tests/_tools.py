"""System tools some tests need (promtool, prometheus, chromium, dockerd): found, or the test skips, or in CI fails.

``.ci/run`` installs every one of them and sets ``TALENTNEST_REQUIRE_TOOLS=1``, so that a tool missing
there fails its tests instead of letting the run go green by skipping them (as
``TALENTNEST_REQUIRE_DOCKER`` does for the Docker engine).
"""

from __future__ import annotations

import os
import shutil

import pytest

REQUIRE_VARIABLE = "TALENTNEST_REQUIRE_TOOLS"


def missing(reason: str) -> None:
    """Skip with ``reason``, or fail with it where the tools are required (CI)."""
    if os.environ.get(REQUIRE_VARIABLE) == "1":
        pytest.fail(f"{REQUIRE_VARIABLE}=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def require(command: str, package: str) -> str:
    """The path of ``command``, or skip/fail saying which Debian package brings it."""
    path = shutil.which(command)
    if path is None:
        missing(f"`{command}` is not installed (apt-get install {package}; ./dev test installs it when run as root)")
    return path
