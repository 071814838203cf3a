"""Drives the real Docker engine for tests/docker: shell commands, HTTP, polling with deadlines, cleanup."""

from __future__ import annotations

import functools
import ipaddress
import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parents[2]
IMAGE = "backend-tn:latest"
NETWORK = "talentnet"
COMPOSE_PROJECT = "talentnest"
T = TypeVar("T")


class Fatal(Exception):
    """Raised by a polled condition when waiting longer cannot help (e.g. an endpoint that does not exist)."""


@dataclass(frozen=True)
class Result:
    command: str
    returncode: int
    stdout: str
    stderr: str

    def describe(self) -> str:
        return f"`{self.command}` exited {self.returncode}\n--- stdout\n{self.stdout[-4000:]}\n--- stderr\n{self.stderr[-4000:]}"


def sh(command: str, *, check: bool = True, timeout: float = 180, env: Mapping[str, str] | None = None) -> Result:
    """Run one shell command line from the repository root, as a user would paste it."""
    full_env = {**os.environ, **(env or {})}
    try:
        proc = subprocess.run(
            ["bash", "-c", command],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=full_env,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(
            f"`{command}` did not finish within {timeout:g} s; output so far:\n{exc.stdout}\n{exc.stderr}"
        ) from None
    result = Result(command, proc.returncode, proc.stdout, proc.stderr)
    if check and proc.returncode != 0:
        raise AssertionError(result.describe())
    return result


@functools.cache
def engine_unavailable() -> str | None:
    """Why tests/docker cannot run here, or None when a Docker engine answers."""
    if shutil.which("docker") is None:
        return "no `docker` command on PATH (install Docker, or run ../shared/tools/docker-engine.sh up)"
    try:
        proc = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return "`docker info` did not answer within 20 s"
    if proc.returncode != 0:
        first = (proc.stderr.strip().splitlines() or ["no output"])[0]
        return f"no Docker engine answers (`docker info`: {first}); start one with ../shared/tools/docker-engine.sh up"
    if shutil.which("curl") is None:
        return "no `curl` command on PATH: the seed's commands use it"
    return None


def poll(
    condition: Callable[[], T],
    *,
    timeout: float,
    what: str,
    diagnostics: Callable[[], str] = lambda: "",
    interval: float = 0.25,
) -> T:
    """Call condition until it returns something truthy; fail after timeout with the last error and diagnostics."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = condition()
        except Fatal as exc:
            raise AssertionError(f"gave up waiting for {what}: {exc}\n{diagnostics()}") from None
        except (OSError, ValueError, KeyError, TypeError, AssertionError) as exc:
            value, last = None, exc
        else:
            last = value
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}; last seen: {last!r}\n{diagnostics()}")
        time.sleep(interval)


def http(method: str, url: str, body: Any = None, *, token: str | None = None, timeout: float = 10) -> tuple[int, Any]:
    """One HTTP call; returns (status, decoded JSON or text). Connection errors raise OSError."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    text = raw.decode(errors="replace")
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def get_ok(url: str) -> Any:
    """GET that must answer 200; returns the JSON body (raises ValueError otherwise, so poll retries)."""
    status, body = http("GET", url)
    if status != 200:
        raise ValueError(f"GET {url} -> {status} {body!r}")
    return body


def cluster_status(port: int) -> dict:
    """GET /cluster/status on localhost:PORT; a 404 means this build has no cluster yet, which waiting cannot fix."""
    status, body = http("GET", f"http://localhost:{port}/cluster/status")
    if status == 404:
        raise Fatal(f"localhost:{port}/cluster/status answers 404: this build has no cluster endpoints")
    if status != 200:
        raise ValueError(f"/cluster/status on {port} -> {status} {body!r}")
    return body


def node_id(ip: str) -> int:
    """The seed's node ID: the last two octets of the IPv4 address, c*256 + d."""
    packed = ipaddress.IPv4Address(ip).packed
    return packed[2] * 256 + packed[3]


def container_ip(name: str, network: str = NETWORK) -> str:
    fmt = '{{(index .NetworkSettings.Networks "' + network + '").IPAddress}}'
    return sh(f"docker inspect -f '{fmt}' {name}").stdout.strip()


def resolve_from(container: str, name: str = "backend-service") -> list[str]:
    """The addresses Docker's embedded DNS gives for name, asked from inside container (as a node asks)."""
    script = f"import socket; print(' '.join(socket.gethostbyname_ex('{name}')[2]))"
    return sorted(sh(f'docker exec {container} python -c "{script}"').stdout.split())


def inspect(name: str) -> dict:
    return json.loads(sh(f"docker inspect {name}").stdout)[0]


def host_port(name: str, container_port: int = 3000) -> int:
    """The host port Docker published for container_port (e.g. for -p 127.0.0.1::3000)."""
    out = sh(f"docker port {name} {container_port}/tcp").stdout.split()
    return int(out[0].rsplit(":", 1)[1])


def logs(name: str, tail: int | None = None) -> str:
    flag = f"--tail {tail} " if tail else ""
    result = sh(f"docker logs {flag}{name}", check=False)
    return result.stdout + result.stderr


def dump_logs(names: Iterable[str], tail: int = 40) -> str:
    return "\n".join(f"--- docker logs --tail {tail} {name}\n{logs(name, tail)}" for name in names)


def existing_containers(names: Iterable[str]) -> list[str]:
    wanted = set(names)
    listed = sh("docker ps -a --format '{{.Names}}'").stdout.split()
    return [name for name in listed if name in wanted]


def volumes_of(names: Iterable[str]) -> list[str]:
    """The volumes mounted by these containers (the anonymous /data volumes that `docker rm` alone leaves)."""
    found = []
    for name in existing_containers(names):
        found += [m["Name"] for m in inspect(name).get("Mounts", []) if m.get("Type") == "volume"]
    return found


def remove_containers(names: Iterable[str]) -> None:
    """Force-remove these containers and their volumes, if they exist."""
    present = existing_containers(names)
    if present:
        sh(f"docker rm -f -v {' '.join(present)}")


def remove_volumes(volumes: Iterable[str]) -> None:
    for volume in volumes:
        sh(f"docker volume rm {volume}", check=False)


def remove_network(name: str = NETWORK) -> None:
    """Remove the network if it exists; fail loudly if something we did not start still uses it."""
    if sh(f"docker network inspect {name}", check=False).returncode == 0:
        sh(f"docker network rm {name}")
