"""The leader's lease: renewed by a majority's acknowledgements, over at a known instant, never longer
than the followers' wait."""

from __future__ import annotations

import pytest
from tests.unit.cluster.fakes import FakeClock

from talentnest.cluster.lease import Lease, check_timing


def test_a_lease_lasts_from_the_majoritys_latest_acknowledgements():
    clock = FakeClock(start=100.0)
    lease = Lease(clock.monotonic, 2.5)
    members = ["a", "b", "c", "d"]  # five voters: this leader and four members
    assert not lease.valid(5, members), "no acknowledgement yet"
    lease.acknowledge("a", 100.0)
    assert not lease.valid(5, members), "one of the two acknowledgements a majority of five needs"
    lease.acknowledge("b", 99.0)
    assert lease.expiry(5, members) == pytest.approx(101.5), "the second-newest acknowledgement sets the end"
    lease.acknowledge("c", 100.5)
    assert lease.expiry(5, members) == pytest.approx(102.5)
    clock.advance(2.4)
    assert lease.valid(5, members)
    clock.advance(0.2)
    assert not lease.valid(5, members)


def test_an_older_acknowledgement_never_shortens_or_lengthens_the_lease():
    lease = Lease(FakeClock().monotonic, 2.5)
    lease.acknowledge("a", 10.0)
    lease.acknowledge("a", 5.0)
    assert lease.expiry(3, ["a", "b"]) == pytest.approx(12.5)


def test_only_current_members_count_and_a_new_term_forgets_everything():
    lease = Lease(FakeClock(start=10.0).monotonic, 2.5)
    lease.acknowledge("gone", 10.0)
    assert lease.expiry(3, ["a", "b"]) == float("-inf"), "an acknowledgement of a node no longer a member"
    lease.acknowledge("a", 10.0)
    assert lease.valid(3, ["a", "b"])
    lease.clear()
    assert not lease.valid(3, ["a", "b"])


def test_a_cluster_of_one_needs_no_acknowledgement():
    assert Lease(FakeClock().monotonic, 2.5).expiry(1, []) == float("inf")


def test_a_lease_that_would_outlive_the_followers_wait_is_refused_at_start():
    check_timing(lease=2.5, suspect_after=3.0)
    with pytest.raises(ValueError, match="must end before followers suspect"):
        check_timing(lease=3.0, suspect_after=3.0)
