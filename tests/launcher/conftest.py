"""Shared pieces for launcher tests: a real dnspython lookup and a fake-node cluster configuration."""

from __future__ import annotations

import contextlib
import socket

import dns.resolver
import pytest

from talentnest.launcher.supervisor import ClusterConfig
from tests.cluster.harness import FAKE_NODE_COMMAND, TEST_PUBLISH_BASE, TEST_SUBNET


def resolve(server: tuple[str, int], name: str, rdtype: str = "A") -> list[str]:
    """The addresses a real A query to ``server`` returns for ``name`` (sorted); raises dnspython's errors."""
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [server[0]]
    resolver.port = server[1]
    resolver.lifetime = 3.0
    return sorted(record.address for record in resolver.resolve(name, rdtype))


@pytest.fixture
def fake_config(tmp_path):
    """A ClusterConfig that runs fake nodes on the test subnet and ports, in this test's directory."""

    def make(**overrides) -> ClusterConfig:
        options = {
            "state_dir": tmp_path / "cluster",
            "subnet": TEST_SUBNET,
            "publish_base": TEST_PUBLISH_BASE,
            "node_command": FAKE_NODE_COMMAND,
            "stop_timeout": 5.0,
            **overrides,
        }
        return ClusterConfig(**options)

    return make


async def eventually(condition, *, timeout: float = 30.0, what: str, interval: float = 0.1):
    """Await ``condition()`` (a coroutine function) until it returns something truthy; fail after ``timeout``."""
    import asyncio
    import time

    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = await condition()
        if last:
            return last
        await asyncio.sleep(interval)
    pytest.fail(f"timed out after {timeout:g} s waiting for {what} (last: {last!r})", pytrace=False)


@contextlib.contextmanager
def holding(host: str, port: int):
    """Another program's listening socket on ``host:port`` for the duration of the block."""
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the launcher binds: TIME_WAIT is not "taken"
        holder.bind((host, port))
        holder.listen()
        yield


def needs_published_ports() -> None:
    if not TEST_PUBLISH_BASE:
        pytest.skip("TN_TEST_PUBLISH_BASE=0: nothing is published")
