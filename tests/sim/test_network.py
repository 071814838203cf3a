"""The in-memory network: refusals, timeouts, partitions (one-way too), lost answers, duplicates."""

from __future__ import annotations

import asyncio

import pytest

from talentnest.cluster.transport import PeerRefused, Reply
from talentnest.errors import PeerUnreachable
from talentnest.sim.loop import Scheduler, SimLoop, VirtualClock
from talentnest.sim.net import Conditions, HttpRequest, Network, reply_headers
from talentnest.sim.trace import Trace


class EchoHost:
    """A process that answers every request at once, and remembers what it served."""

    def __init__(self, network: Network, loop: SimLoop, address: str):
        self.network, self.loop, self.address = network, loop, address
        self.listening = True
        self.served: list[str] = []

    def accept(self, exchange) -> None:
        self.served.append(exchange.request.target)
        reply = Reply(200, reply_headers([(b"x-served-by", self.address.encode())]), b"ok")
        self.loop.call_soon(self.network.send_back, exchange, reply)


@pytest.fixture
def world():
    clock = VirtualClock()
    scheduler = Scheduler(clock)
    caller, callee = SimLoop(clock, "caller"), SimLoop(clock, "callee")
    scheduler.add(caller)
    scheduler.add(callee)
    network = Network(clock, scheduler.wire, seed=7, trace=Trace(clock))
    host = EchoHost(network, callee, "10.0.2.2")
    network.hosts[host.address] = host
    return scheduler, caller, network, host


def call(scheduler: Scheduler, caller: SimLoop, network: Network, target: str = "/x", timeout: float = 2.0):
    outcome: list[object] = []

    async def go():
        try:
            outcome.append(await network.exchange("10.0.2.1", "10.0.2.2", HttpRequest("GET", target, []), timeout, base_url="u"))
        except PeerUnreachable as exc:
            outcome.append(exc)

    caller.create_task(go())
    scheduler.run_until(scheduler.clock.now + timeout + 1)
    return outcome[0]


def test_an_answer_comes_back_after_the_delays_of_both_ways(world):
    scheduler, caller, network, host = world
    reply = call(scheduler, caller, network)

    assert isinstance(reply, Reply) and reply.status == 200
    assert reply.headers["X-Served-By"] == "10.0.2.2"  # case-insensitive, as aiohttp's
    assert host.served == ["/x"]


def test_nobody_listening_is_a_refusal_not_a_timeout(world):
    scheduler, caller, network, host = world
    host.listening = False
    error = call(scheduler, caller, network)

    assert isinstance(error, PeerRefused)
    assert host.served == []


def test_a_cut_link_times_the_caller_out_and_the_request_never_arrives(world):
    scheduler, caller, network, host = world
    network.cut([("10.0.2.1", "10.0.2.2")])
    error = call(scheduler, caller, network, timeout=2.0)

    assert isinstance(error, PeerUnreachable) and not isinstance(error, PeerRefused)
    assert "within 2 s" in str(error)
    assert host.served == []


def test_a_one_way_cut_loses_the_answer_but_the_callee_did_the_work(world):
    scheduler, caller, network, host = world
    network.cut([("10.0.2.2", "10.0.2.1")])
    error = call(scheduler, caller, network)

    assert isinstance(error, PeerUnreachable)
    assert host.served == ["/x"]


def test_overlapping_partitions_heal_one_at_a_time(world):
    scheduler, caller, network, _ = world
    link = [("10.0.2.1", "10.0.2.2")]
    network.cut(link)
    network.cut(link)
    network.heal(link)
    assert isinstance(call(scheduler, caller, network), PeerUnreachable)
    network.heal(link)
    assert isinstance(call(scheduler, caller, network), Reply)


def test_a_duplicated_request_is_served_twice_and_answered_once(world):
    scheduler, caller, network, host = world
    network.conditions = Conditions(duplicate=1.0)
    reply = call(scheduler, caller, network)

    assert isinstance(reply, Reply)
    assert host.served == ["/x", "/x"]


def test_delays_reorder_messages_on_one_link(world):
    scheduler, caller, network, host = world
    network.conditions = Conditions(delay=(0.001, 0.5))

    async def many():
        await asyncio.gather(
            *(network.exchange("10.0.2.1", "10.0.2.2", HttpRequest("GET", f"/{i}", []), 5, base_url="u") for i in range(20))
        )

    caller.create_task(many())
    scheduler.run_until(10)

    assert sorted(host.served) == sorted(f"/{i}" for i in range(20))
    assert host.served != [f"/{i}" for i in range(20)]
