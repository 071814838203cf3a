"""A new user's path (issue 12): `talentnest generate`, `talentnest cluster up --data-from` with real
nodes, then search, log in, read the feed and write through the published port."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest

from tests.cluster.harness import ROOT, TEST_PUBLISH_BASE, TEST_SUBNET

pytestmark = pytest.mark.cluster


def _run(*arguments: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key != "TALENTNEST_CLUSTER_DIR"}
    env["PYTHONPATH"] = str(ROOT / "src")
    return subprocess.run(
        [sys.executable, "-m", "talentnest", *arguments], env=env, capture_output=True, text=True, timeout=timeout
    )


def test_a_cluster_started_on_a_generated_network_elects_a_leader_and_takes_writes(tmp_path):
    source, state = tmp_path / "network", tmp_path / "cluster"
    generated = _run("generate", str(source), "--members", "40")
    assert generated.returncode == 0, generated.stderr
    where = ["--dir", str(state), "--subnet", TEST_SUBNET, "--publish-base", str(TEST_PUBLISH_BASE)]
    up = _run("cluster", "up", "--detach", "--nodes", "3", "--data-from", str(source), "--timeout", "60", *where)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        # Every node holds the same copied data: they are members that vote, not new nodes that wait.
        assert "no leader agreed" not in up.stdout + up.stderr, up.stdout + up.stderr
        status = _run("cluster", "status", "--dir", str(state))
        assert status.returncode == 0, status.stdout + status.stderr
        base = f"http://localhost:{TEST_PUBLISH_BASE + 1}"
        with httpx.Client(base_url=base, timeout=10, trust_env=False) as http:
            found = http.get("/api/users/search", params={"query": "python"}).json()["items"]
            assert found, "the generated network has members who know Python"
            username = found[0]["username"]
            login = http.post("/api/auth/login", json={"username": username, "password": "password123"})
            assert login.status_code == 200, login.text
            bearer = {"Authorization": f"Bearer {login.json()['token']}"}
            assert http.get("/api/feed", headers=bearer).status_code == 200
            written = http.post("/api/posts", json={"content": "hello from a generated network"}, headers=bearer)
            assert written.status_code == 201, written.text
    finally:
        _run("cluster", "down", "--dir", str(state))
