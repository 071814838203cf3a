"""The leader's stream to one follower: a window of batches, backoff while it is away, resend from gaps."""

from __future__ import annotations

import asyncio

import pytest
from tests.unit.cluster.fakes import FakeClock, reply

from talentnest.cluster import stream as stream_module
from talentnest.cluster.logwire import ReplicateReply
from talentnest.cluster.stats import Stats
from talentnest.cluster.stream import FollowerStream
from talentnest.cluster.wire import decode
from talentnest.config import Settings
from talentnest.errors import PeerUnreachable
from talentnest.store.schema import product_database


class Node:
    node_id, url, heartbeat = 515, "http://10.0.2.3:3000", 1.0
    settings = Settings(jwt_secret="x" * 32, replication_linger=0.0)

    def __init__(self, transport):
        self.transport = transport
        self.clock = FakeClock()
        self.term = 2
        self.adopted: list[int] = []
        self.acks: list[tuple[str, float]] = []

    def adopt_term(self, term, why):
        self.adopted.append(term)

    def lease_acknowledged(self, address, sent_at):
        self.acks.append((address, sent_at))


class Sender:
    def __init__(self, node, db):
        self.node, self.db, self.stats = node, db, Stats()
        self.acknowledgements = 0
        self._event = asyncio.Event()

    def now(self):
        return self.node.clock.monotonic()

    def commit_time(self, lsn):
        return None

    def new_entries_event(self):
        return self._event

    def reported_lsn(self, address):
        return 0

    def acknowledged(self):
        self.acknowledgements += 1


class Holding:
    """A follower that takes requests and answers only when told."""

    def __init__(self):
        self.requests: list[tuple[dict, asyncio.Future]] = []

    async def call(self, method, base_url, target, *, body=b"", timeout, headers=None, sign=True):
        future = asyncio.get_running_loop().create_future()
        self.requests.append((decode(body), future))
        return await future


@pytest.fixture
def leader_db(tmp_path):
    db = product_database(tmp_path)
    db.open()
    db.term = 2
    for n in range(20):
        with db.write() as conn:
            conn.execute(
                "INSERT INTO users(username, email, name, password_hash, created_at, updated_at) "
                "VALUES (?, ?, 'n', 'x', 't', 't')",
                (f"u{n}", f"u{n}@x"),
            )
    yield db
    db.close()


def make(leader_db, transport):
    node = Node(transport)
    sender = Sender(node, leader_db)
    return FollowerStream(sender, "10.0.2.1", "http://10.0.2.1:3000", 513), sender, node


async def test_up_to_four_batches_are_in_flight_once_the_history_is_confirmed(leader_db, monkeypatch):
    monkeypatch.setattr(stream_module, "BATCH_ENTRIES", 2)
    transport = Holding()
    s, _sender, _node = make(leader_db, transport)
    s.next_lsn = 1
    assert s._fill() == 1, "one request at a time until the follower has checked our history"
    await asyncio.sleep(0)
    assert transport.requests[0][0]["history"] == [[2, 1, 0]], "the first batch carries the history"
    transport.requests[0][1].set_result(reply({"term": 2, "success": True, "applied_lsn": 2, "reason": "applied"}))
    for _ in range(5):
        await asyncio.sleep(0)
    assert s.confirmed and s.match_lsn == 2
    assert s._fill() == 4
    await asyncio.sleep(0)
    assert len(s._inflight) == 4 == FollowerStream.WINDOW
    assert [r["prev_lsn"] for r, _ in transport.requests[1:]] == [2, 4, 6, 8]
    assert all(r["history"] is None for r, _ in transport.requests[1:])
    assert s._fill() == 0, "the window is full"
    await s.stop()


async def test_backoff_doubles_from_50_ms_to_1_s_and_resends_from_what_the_follower_holds(leader_db):
    class Away:
        async def call(self, *args, **kwargs):
            raise PeerUnreachable("no route to host")

    s, sender, node = make(leader_db, Away())
    s.match_lsn = 5
    waits = []
    for _ in range(7):
        await s._request(b"{}", 3, s._epoch, node.term)
        waits.append(round(s._retry_at - node.clock.monotonic(), 3))
    assert waits == [0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert s.next_lsn == 6, "everything after the follower's position is sent again"
    assert sender.stats.send_failures == 7
    s.retry_now()
    assert s.failures == 0 and not s.confirmed, "a peer back from the dead is checked again at once"


async def test_a_gap_resets_the_stream_to_the_followers_position_and_ignores_older_answers(leader_db):
    s, _sender, node = make(leader_db, Holding())
    s.next_lsn, s.match_lsn, s.confirmed = 11, 8, True
    epoch = s._epoch
    s.handle(ReplicateReply(2, False, 6, "gap"), epoch, 0.0, 2)
    assert (s.next_lsn, s.match_lsn) == (7, 6), "the follower's own word, even when lower"
    s.handle(ReplicateReply(2, True, 10, "applied"), epoch, 0.0, 2)
    assert (s.next_lsn, s.match_lsn) == (7, 6), "an answer to a request sent before the reset moves nothing"
    assert node.acks, "but it still shows the follower accepts this leader"


async def test_a_follower_in_a_later_term_makes_the_leader_adopt_it_and_renews_nothing(leader_db):
    s, _sender, node = make(leader_db, Holding())
    s.handle(ReplicateReply(5, False, 0, "stale_term"), s._epoch, 1.0, 2)
    assert node.adopted == [5] and node.acks == []


async def test_a_success_in_this_term_renews_the_lease_and_releases_quorum_waiters(leader_db):
    s, sender, node = make(leader_db, Holding())
    s.next_lsn = 1
    s.handle(ReplicateReply(2, True, 12, "applied"), s._epoch, 123.0, 2)
    assert node.acks == [("10.0.2.1", 123.0)]
    assert s.match_lsn == 12 and s.next_lsn == 13 and sender.acknowledgements == 1


async def test_an_answer_sent_for_an_older_term_renews_no_lease(leader_db):
    s, _sender, node = make(leader_db, Holding())
    s.handle(ReplicateReply(2, True, 3, "applied"), s._epoch, 1.0, term=1)
    assert node.acks == []


async def test_an_idle_stream_checks_each_heartbeat_that_the_follower_still_holds_what_it_acknowledged(leader_db):
    # The follower's log can go back without a word to this stream (it installed another node's
    # snapshot, or archived what another leader of the term showed it: simulator seeds 1430 and 733).
    transport = Holding()
    s, _sender, node = make(leader_db, transport)
    s.next_lsn, s.match_lsn, s.confirmed = 21, 20, True
    s._last_sent = node.clock.monotonic()
    s.start()
    for _ in range(5):
        await asyncio.sleep(0)
    assert transport.requests == [], "nothing to send, and a batch left less than a heartbeat ago"
    node.clock.advance(1.0)
    s.wakeup.set()
    for _ in range(5):
        await asyncio.sleep(0)
    (check, answer), *_ = transport.requests
    assert (check["prev_lsn"], check["entries"]) == (20, []), "an empty batch after what it acknowledged"
    answer.set_result(reply({"term": 2, "success": False, "applied_lsn": 3, "reason": "gap"}))
    for _ in range(10):
        await asyncio.sleep(0)
    assert s.match_lsn == 3
    assert [r["prev_lsn"] for r, _ in transport.requests[1:2]] == [3], "it sends again from what the follower holds"
    await s.stop()


async def test_a_same_term_stale_term_answer_comes_from_another_leader_of_the_term_and_renews_no_lease(leader_db):
    # Only a node that leads this term itself answers "stale_term" in it: it is no follower of ours.
    s, _sender, node = make(leader_db, Holding())
    s.handle(ReplicateReply(2, False, 4, "stale_term"), s._epoch, 1.0, 2)
    assert node.acks == [] and node.adopted == []


async def test_a_follower_that_answers_but_cannot_apply_is_backed_off_further_and_never_called_back(leader_db, caplog):
    # A full disk: the follower answers "unavailable" each time. Its backoff grows as for a follower that
    # is away, and the log does not say it came back (it never went: 18 lines a second in a nemesis run).
    class Full:
        async def call(self, *args, **kwargs):
            return reply({"term": 2, "success": False, "applied_lsn": 5, "reason": "unavailable"})

    s, _sender, node = make(leader_db, Full())
    waits = []
    with caplog.at_level("INFO", logger="talentnest.replication"):
        for _ in range(4):
            await s._request(b"{}", 3, s._epoch, node.term)
            waits.append(round(s._retry_at - node.clock.monotonic(), 3))
    assert waits == [0.05, 0.1, 0.2, 0.4]
    assert "reachable again" not in caplog.text


def add_users(db, count: int, first: int = 100) -> int:
    for n in range(first, first + count):
        with db.write() as conn:
            conn.execute(
                "INSERT INTO users(username, email, name, password_hash, created_at, updated_at) "
                "VALUES (?, ?, 'n', 'x', 't', 't')",
                (f"u{n}", f"u{n}@x"),
            )
    return db.last_lsn


def lingering(leader_db, transport, linger: float = 0.005):
    s, sender, node = make(leader_db, transport)
    node.settings = Settings(jwt_secret="x" * 32, replication_linger=linger)
    s.next_lsn, s.match_lsn, s.confirmed = 1, 0, True
    return s, sender, node


async def sent_ranges(transport) -> list[tuple[int, int]]:
    """(prev_lsn, entries) of every batch sent so far (their requests run as tasks: let them start)."""
    for _ in range(5):
        await asyncio.sleep(0)
    return [(r["prev_lsn"], len(r["entries"])) for r, _ in transport.requests]


async def test_entries_nobody_waits_for_linger_so_that_writes_one_at_a_time_share_a_batch(leader_db):
    transport = Holding()
    s, _sender, node = lingering(leader_db, transport)
    assert s._fill() == 1, "a quiet stream sends at once"
    last = add_users(leader_db, 3)
    assert s._fill() == 0 and s._held_until() == pytest.approx(node.clock.monotonic() + 0.005), (
        "a batch left just now: the new entries wait for the linger"
    )
    node.clock.advance(0.004)
    assert s._fill() == 0, "still within the linger"
    node.clock.advance(0.001)
    assert s._fill() == 1
    assert await sent_ranges(transport) == [(0, 20), (20, 3)], "the three writes left in one batch"
    assert s.next_lsn == last + 1
    await s.stop()


async def test_entries_somebody_waits_for_leave_at_once(leader_db, monkeypatch):
    transport = Holding()
    s, _sender, _node = lingering(leader_db, transport)
    s._fill()
    first = add_users(leader_db, 1)
    second = add_users(leader_db, 1, first=200)
    s.hurry(first)
    assert s.wakeup.is_set(), "the stream's loop is woken"
    assert s._fill() == 1 and (await sent_ranges(transport))[-1] == (20, 2), "the awaited entry, with what follows it"
    add_users(leader_db, 1, first=300)
    assert s._fill() == 0, "what nobody waits for lingers again"
    s.hurry(second)
    assert s._fill() == 0, "an LSN already sent hurries nothing"
    monkeypatch.setattr(stream_module, "BATCH_ENTRIES", 2)
    add_users(leader_db, 1, first=400)
    assert s._fill() == 1, "entries that fill a batch do not wait"
    await s.stop()


async def test_no_linger_sends_every_entry_as_it_comes(leader_db):
    transport = Holding()
    s, _sender, _node = lingering(leader_db, transport, linger=0.0)
    s._fill()
    add_users(leader_db, 1)
    assert s._fill() == 1
    await s.stop()


async def test_the_streams_loop_sends_held_entries_once_the_linger_has_passed(leader_db):
    transport = Holding()
    s, _sender, node = lingering(leader_db, transport)
    s.start()
    await until(lambda: len(transport.requests) == 1)
    add_users(leader_db, 2)
    s.wakeup.set()
    for _ in range(20):
        await asyncio.sleep(0)
    assert len(transport.requests) == 1, "held within the linger"
    node.clock.advance(0.005)
    await until(lambda: len(transport.requests) == 2)
    assert (await sent_ranges(transport))[1] == (20, 2)
    await s.stop()


async def until(condition, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "the condition did not come true in time"
        await asyncio.sleep(0.001)
