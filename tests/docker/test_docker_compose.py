"""compose.yaml and the Swarm stack: valid for Docker's own loaders, and the compose cluster comes up and scales."""

from __future__ import annotations

import json

import _engine
import pytest
from _engine import cluster_status, container_ip, get_ok, node_id, poll, sh

pytestmark = pytest.mark.docker

SECRET = {"JWT_SECRET": "compose-test-secret-of-more-than-thirty-two-bytes"}
EXTRA_PORTS = range(3004, 3010)
STARTUP, ELECTION = 60, 90


def _compose(env: dict, args: str, *, check: bool = True, timeout: float = 300) -> _engine.Result:
    return sh(f"docker compose {args}", env={**env, **SECRET}, check=check, timeout=timeout)


def test_compose_file_needs_a_jwt_secret(compose_env):
    result = sh("docker compose config", env={**compose_env, "JWT_SECRET": ""}, check=False)
    assert result.returncode != 0
    assert "JWT_SECRET" in result.stderr


def test_compose_file_keeps_the_seed_names_ports_and_alias(compose_env):
    config = json.loads(_compose(compose_env, "config --format json").stdout)
    assert config["networks"]["talentnet"]["name"] == "talentnet"
    services = config["services"]
    for number in (1, 2, 3):
        service = services[f"backend-{number}"]
        assert service["container_name"] == f"backend-{number}"
        assert [(p["target"], p["published"]) for p in service["ports"]] == [(3000, f"300{number}")]
    assert [(p["target"], p["published"]) for p in services["backend"]["ports"]] == [(3000, "3004-3009")]
    assert services["backend"]["scale"] == 0
    for service in services.values():
        assert service["image"] == "backend-tn:latest"
        assert service["environment"]["SERVICE_NAME"] == "backend-service"
        assert service["environment"]["JWT_SECRET"] == SECRET["JWT_SECRET"]
        assert service["networks"]["talentnet"]["aliases"] == ["backend-service"]
        assert service["read_only"] is True


def test_swarm_stack_is_valid_for_compose_and_for_docker_stack(compose_env):
    config = json.loads(_compose(compose_env, "-f deploy/swarm/stack.yaml config --format json").stdout)
    backend = config["services"]["backend"]
    assert backend["environment"]["SERVICE_NAME"] == "tasks.backend"
    assert backend["deploy"]["update_config"]["parallelism"] == 1
    if sh("docker stack config --help", check=False).returncode == 0:  # the loader `docker stack deploy` uses
        sh("docker stack config -c deploy/swarm/stack.yaml")


@pytest.fixture(scope="module")
def project(compose_env, image):
    """The compose project, brought down (with its volumes) before and after; the seed's containers must not hold the ports."""

    def clean() -> None:
        _compose(compose_env, "down -v --remove-orphans")
        _engine.remove_containers(["backend-1", "backend-2", "backend-3", "backend-4"])
        _engine.remove_network()

    clean()
    yield compose_env
    clean()


def _replicas(env: dict) -> dict[str, int]:
    """Running nodes of the project: container name -> published host port."""
    rows = _compose(env, "ps --format json").stdout
    containers = [json.loads(line) for line in rows.splitlines() if line.strip()]
    if len(containers) == 1 and isinstance(containers[0], list):
        containers = containers[0]
    return {c["Name"]: _engine.host_port(c["Name"]) for c in containers}


def _check_nodes(env: dict, count: int) -> dict[str, int]:
    """count nodes answer on their published ports, and the alias resolves to all of them."""
    replicas = _replicas(env)
    assert len(replicas) == count, replicas
    for name, port in replicas.items():
        poll(
            lambda port=port: get_ok(f"http://localhost:{port}/healthz"),
            timeout=STARTUP,
            what=f"{name} on :{port}",
            diagnostics=lambda: _engine.dump_logs(replicas),
        )
    addresses = sorted(container_ip(name) for name in replicas)
    poll(
        lambda: _engine.resolve_from("backend-1") == addresses,
        timeout=STARTUP,
        what=f"backend-service to resolve to the {count} nodes",
    )
    return replicas


def test_compose_up_brings_the_seed_three_nodes(project):
    _compose(project, "up -d")
    replicas = _check_nodes(project, 3)
    assert replicas == {"backend-1": 3001, "backend-2": 3002, "backend-3": 3003}
    ids = [node_id(container_ip(name)) for name in ("backend-1", "backend-2", "backend-3")]
    assert ids == sorted(ids), f"started in order, backend-3 has the highest ID: {ids}"


def test_compose_scales_with_extra_nodes(project):
    _compose(project, "up -d --scale backend=2")
    replicas = _check_nodes(project, 5)
    extra = sorted(port for name, port in replicas.items() if not name.startswith("backend-"))
    assert len(extra) == 2 and all(port in EXTRA_PORTS for port in extra), replicas


def test_scaled_compose_cluster_agrees_on_the_highest_id(project):
    replicas = _replicas(project)
    highest = max(node_id(container_ip(name)) for name in replicas)

    def agreed() -> bool:
        return all(
            cluster_status(port)["leader_id"] == highest and cluster_status(port)["total_nodes"] == len(replicas)
            for port in replicas.values()
        )

    poll(
        agreed,
        timeout=ELECTION,
        what="every node to report the highest ID as leader",
        diagnostics=lambda: _engine.dump_logs(replicas),
    )


def test_compose_down_removes_nodes_network_and_volumes(project):
    volumes = _engine.volumes_of(_replicas(project))
    assert len(volumes) == 5, "each node should have its own /data volume"
    _compose(project, "down -v")
    assert _replicas(project) == {}
    assert sh("docker network inspect talentnet", check=False).returncode != 0
    leftover = set(volumes) & set(sh("docker volume ls -q").stdout.split())
    _engine.remove_volumes(leftover)
    assert not leftover, "docker compose down -v left data volumes behind"
