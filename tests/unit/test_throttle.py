"""The login throttle alone: shares of a cluster-wide allowance, sliding windows, bounded memory."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from talentnest.errors import TooManyRequests
from talentnest.services.throttle import LoginThrottle, ThrottlePolicy


def allowed_failures(throttle: LoginThrottle, account: str = "user:1", address: str | None = "192.0.2.1") -> int:
    """How many failures this node takes for ``account`` before it throttles."""
    count = 0
    while True:
        try:
            throttle.check(account, address)
        except TooManyRequests:
            return count
        throttle.failed(account, address)
        count += 1
        assert count < 10_000


@given(allowance=st.integers(1, 200), nodes=st.integers(1, 12))
def test_spreading_attempts_over_every_node_gets_at_most_the_allowance_plus_one_per_node(allowance: int, nodes: int):
    policy = ThrottlePolicy(per_account=allowance, per_address=10**6, window=60)
    cluster = [LoginThrottle(policy, sharing_nodes=lambda: nodes, clock=lambda: 0.0) for _ in range(nodes)]

    total = sum(allowed_failures(node) for node in cluster)

    assert allowance <= total < allowance + nodes


@pytest.mark.parametrize("answer", [0, -3])
def test_a_node_count_below_one_counts_as_one(answer: int):
    throttle = LoginThrottle(ThrottlePolicy(per_account=5), sharing_nodes=lambda: answer, clock=lambda: 0.0)

    assert allowed_failures(throttle) == 5


def test_a_failing_node_count_counts_as_one():
    def broken() -> int:
        raise RuntimeError("cluster view unavailable")

    throttle = LoginThrottle(ThrottlePolicy(per_account=5), sharing_nodes=broken, clock=lambda: 0.0)

    assert allowed_failures(throttle) == 5


def test_the_share_follows_the_live_node_count():
    live = [3]
    throttle = LoginThrottle(ThrottlePolicy(per_account=9), sharing_nodes=lambda: live[0], clock=lambda: 0.0)
    assert allowed_failures(throttle, "user:1") == 3

    live[0] = 1  # two nodes died: this one now carries the whole allowance

    assert allowed_failures(throttle, "user:2") == 9


def test_retry_after_counts_to_when_the_oldest_failure_that_matters_leaves_the_window():
    now = [0.0]
    throttle = LoginThrottle(ThrottlePolicy(per_account=2, window=100), clock=lambda: now[0])
    for at in (0.0, 30.0, 60.0):  # three failures, allowance two: the second one must leave
        now[0] = at
        throttle.failed("user:1", None)
    now[0] = 70.0

    with pytest.raises(TooManyRequests) as caught:
        throttle.check("user:1", None)

    assert caught.value.retry_after == 60  # the failure at 30 leaves at 130


def test_forgotten_keys_keep_memory_bounded():
    throttle = LoginThrottle(ThrottlePolicy(per_account=1, per_address=10**6, max_keys=50), clock=lambda: 0.0)
    for i in range(500):
        throttle.failed(f"name:guess{i}", "192.0.2.1")

    assert len(throttle._accounts._failures) == 50
    with pytest.raises(TooManyRequests):
        throttle.check("name:guess499", None)  # the most recent are kept
