"""Fixtures for multi-process cluster tests: each test gets clusters in its own directory, always torn down."""

from __future__ import annotations

import pytest

from tests.cluster.harness import REAL_NODE_COMMAND, Cluster, require_firewall


@pytest.fixture
def firewall_available() -> None:
    """For ``needs_firewall``: skip without iptables and root, or fail when CI requires the tools."""
    require_firewall()


@pytest.fixture
def make_cluster(tmp_path):
    """Factory: ``make_cluster(nodes=3, env={...}, node_command=..., wait=True)`` -> a started :class:`Cluster`.

    One cluster at a time (they share the test subnet). Whatever happens in the test, every node is
    stopped and every iptables rule removed afterwards.
    """
    made: list[Cluster] = []

    def factory(nodes: int = 3, *, env=None, node_command=REAL_NODE_COMMAND, wait: bool = True, **options) -> Cluster:
        """``options`` go to :class:`Cluster` (``node_env``, ``disks``, ``fake_clocks``, ``stop_timeout``...)."""
        for earlier in made:
            earlier.close()
        cluster = Cluster(tmp_path / f"cluster-{len(made) + 1}", env=env, node_command=node_command, **options)
        made.append(cluster)
        cluster.start(nodes, wait=wait)
        return cluster

    yield factory
    errors = []
    for cluster in reversed(made):
        try:
            cluster.close()
        except Exception as exc:  # keep closing the others; report after
            errors.append(exc)
    if errors:
        raise errors[0]
