"""Writes somebody waits for skip the replication linger (quorum writes, forwarded writes, drains), and a
forwarded write's answer that carries its entry to the follower that forwarded it."""

from __future__ import annotations

import pytest
from tests.unit.cluster.fakes import FakeClock

from talentnest.cluster import auth
from talentnest.cluster.forward import CARRIES, CARRY_REQUEST, unwrap_carried
from talentnest.cluster.gate import WriteGate
from talentnest.cluster.leader import CARRIED_ENTRIES, LeaderSide
from talentnest.cluster.logwire import ReplicateRequest, decode_replicate
from talentnest.cluster.middleware import FORWARDED_BY, ClusterMiddleware
from talentnest.cluster.replication import Replication
from talentnest.cluster.stats import Stats
from talentnest.cluster.stream import FollowerStream
from talentnest.config import Settings
from talentnest.store.schema import product_database

KEY = b"cluster-key-cluster-key-cluster!"
FOLLOWERS = {"10.0.2.1": 513, "10.0.2.2": 514}


class Node:
    node_id, url, heartbeat, term = 515, "http://10.0.2.3:3000", 1.0, 2

    def __init__(self):
        self.clock = FakeClock()
        self.settings = Settings(jwt_secret="x" * 32)

    def voters(self):
        return 3


@pytest.fixture
def db(tmp_path):
    db = product_database(tmp_path)
    db.open()
    db.term = 2
    yield db
    db.close()


def add_user(db, n: int) -> int:
    with db.write() as conn:
        conn.execute(
            "INSERT INTO users(username, email, name, password_hash, created_at, updated_at) VALUES (?, ?, 'n', 'x', 't', 't')",
            (f"u{n}", f"u{n}@x"),
        )
    return db.last_lsn


def leader_side(db) -> LeaderSide:
    side = LeaderSide(Node(), db, Stats())
    side.leading = True
    # The streams themselves, not started: what is asked of them is what the test reads.
    side.streams = {a: FollowerStream(side, a, f"http://{a}:3000", node_id) for a, node_id in FOLLOWERS.items()}
    return side


def awaited(side: LeaderSide) -> dict[int, int]:
    return {s.node_id: s.awaited_lsn for s in side.streams.values()}


async def test_a_hurry_reaches_the_named_follower_only_or_every_one(db):
    side = leader_side(db)
    side.hurry(5, 514)
    assert awaited(side) == {513: 0, 514: 5}
    side.hurry(3)
    assert awaited(side) == {513: 3, 514: 5}, "an awaited LSN never goes back"


async def test_a_write_waiting_for_a_quorum_and_a_drain_hurry_every_follower(db):
    side = leader_side(db)
    lsn = add_user(db, 1)
    assert await side.wait_quorum(lsn, 2, timeout=0.01) is False, "nobody answers in this test"
    assert awaited(side) == {513: lsn, 514: lsn}
    last = add_user(db, 2)
    await side.drain(timeout=0)
    assert awaited(side) == {513: last, 514: last}


class Coordinator:
    node_id, url, client, role_name = 515, "http://10.0.2.3:3000", None, "leader"

    def __init__(self):
        self.awaited: list[tuple[int, int | None]] = []

    def wall(self):
        return 1_700_000_000.0

    def accepting_writes(self):
        return True

    def current_term(self):
        return 2

    async def wait_committed(self, lsn, term, timeout):
        return True

    def awaited_by(self, lsn, node_id):
        self.awaited.append((lsn, node_id))

    def refusal(self):
        return None

    def unhealthy(self):
        return None


async def write(db, coordinator, headers: list[tuple[bytes, bytes]]) -> int:
    return (await write_answer(db, coordinator, headers))[0]["status"]


async def write_answer(db, coordinator, headers: list[tuple[bytes, bytes]], status: int = 201) -> list[dict]:
    async def app(scope, receive, send):
        add_user(db, 1000 + db.last_lsn)
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b"" if status == 204 else b"{}"})

    signatures = auth.RequestAuth(auth.Keyring(KEY), coordinator.wall)
    layer = ClusterMiddleware(app, coordinator=coordinator, db=db, is_write=lambda scope: True, signatures=signatures)
    scope = {"type": "http", "method": "POST", "path": "/api/posts", "query_string": b"", "headers": headers}
    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    await layer(scope, receive, send)
    return sent


def signed(*extra: tuple[bytes, bytes]) -> list[tuple[bytes, bytes]]:
    signature = auth.sign(KEY, "POST", "/api/posts", b"", now=1_700_000_000.0)
    return [(b"x-cluster-signature", signature.encode()), *extra]


@pytest.mark.parametrize(
    "forwarded_by, hurried",
    [("514", 514), ("node 514", None)],
    ids=["a node id", "not a number: every follower"],
)
async def test_a_write_forwarded_by_a_follower_is_sent_to_it_without_lingering(db, forwarded_by, hurried):
    coordinator = Coordinator()
    status = await write(db, coordinator, signed((FORWARDED_BY.encode(), forwarded_by.encode())))
    assert status == 201
    assert coordinator.awaited == [(db.last_lsn, hurried)]


async def test_a_clients_write_lingers_even_if_it_claims_to_be_forwarded(db):
    coordinator = Coordinator()
    assert await write(db, coordinator, signed()) == 201, "a peer's own write, not forwarded"
    assert await write(db, coordinator, [(FORWARDED_BY.encode(), b"514")]) == 201, "unsigned: the header is dropped"
    assert coordinator.awaited == []


async def test_the_leader_carries_the_entries_the_follower_lacks_up_to_its_write_if_they_are_few(db):
    side = leader_side(db)
    first = add_user(db, 1)
    lsn = add_user(db, 2)
    request = ReplicateRequest.parse(decode_replicate(side.carried(lsn - 1, lsn)))
    assert (request.prev_lsn, [e.lsn for e in request.entries], request.term) == (lsn - 1, [lsn], 2)
    assert request.prev_term == 2 and request.history is None
    both = ReplicateRequest.parse(decode_replicate(side.carried(first - 1, lsn)))
    assert (both.prev_lsn, [e.lsn for e in both.entries]) == (first - 1, [first, lsn])
    for _ in range(CARRIED_ENTRIES):
        last = add_user(db, 10 + _)
    assert side.carried(last - CARRIED_ENTRIES, last) is not None
    assert side.carried(last - CARRIED_ENTRIES - 1, last) is None, "too many: the stream carries them"
    assert side.carried(lsn, lsn) is None and side.carried(lsn + 1, lsn) is None, "it holds the write already"
    assert side.carried(lsn, lsn + 100) is None, "no entry there yet"
    side.leading = False
    assert side.carried(lsn - 1, lsn) is None, "only a leader carries its entries"


class Carrying(Coordinator):
    def __init__(self, entry: bytes | None):
        super().__init__()
        self.entry = entry

    def carried(self, held, lsn):
        self.asked = (held, lsn)
        return self.entry


@pytest.mark.parametrize("entry", [b'{"entries":[]}', None], ids=["carried", "cannot be carried: hurried instead"])
async def test_a_follower_that_asks_gets_its_forwarded_write_s_entry_in_the_answer(db, entry):
    coordinator = Carrying(entry)
    sent = await write_answer(db, coordinator, signed((FORWARDED_BY.encode(), b"514"), (CARRY_REQUEST.lower().encode(), b"3")))
    headers = dict(sent[0]["headers"])
    body = sent[1]["body"]
    if entry is None:
        assert CARRIES not in headers and body == b"{}"
        assert coordinator.awaited == [(db.last_lsn, 514)]
    else:
        assert headers[CARRIES] == b"1" and unwrap_carried(body) == (entry, b"{}")
        assert coordinator.asked == (3, db.last_lsn), "what the follower holds, and the write's LSN"
        assert int(headers[b"content-length"]) == len(body)
        assert coordinator.awaited == [], "the stream need not hurry: the follower applies the entry itself"


async def test_a_follower_that_does_not_ask_gets_the_answer_as_before(db):
    coordinator = Carrying(b'{"entries":[]}')
    sent = await write_answer(db, coordinator, signed((FORWARDED_BY.encode(), b"514")))
    assert CARRIES not in dict(sent[0]["headers"]) and sent[1]["body"] == b"{}"


class Following:
    """What the gate reads of a follower node (its replication, health and term bound), with replication's
    own reading of a replicate body (``Replication.on_replicate_body``) in front of the batches it records."""

    term = 2
    on_replicate_body = Replication.on_replicate_body

    def __init__(self, refusal=None):
        self.batches: list[ReplicateRequest] = []
        self.replication = self.health = self.node = self
        self._refusal = refusal

    def refusal(self):
        return self._refusal

    def term_in_reach(self, term):
        return term <= 10

    async def on_replicate(self, request):
        self.batches.append(request)


async def test_a_carried_entry_goes_through_the_replicate_path_and_what_a_replicate_call_refuses_is_not_applied(db):
    lsn = add_user(db, 1)
    body = leader_side(db).carried(lsn - 1, lsn)
    node = Following()
    gate = WriteGate(node)
    await gate.apply_carried(body)
    assert [b.entries[0].lsn for b in node.batches] == [lsn]
    for bad in (b"{}", b"not json", body.replace(b'"term":2', b'"term":11', 1)):
        await gate.apply_carried(bad)
    assert len(node.batches) == 1, "unreadable, or a term out of reach: nothing applied"
    clashing = Following(refusal="another node has this ID")
    await WriteGate(clashing).apply_carried(body)
    assert clashing.batches == []


@pytest.mark.parametrize("held", [b"", b"-1", b"x", b"9" * 20])
async def test_a_carry_request_that_names_no_lsn_gets_the_answer_as_before_and_a_hurried_stream(db, held):
    coordinator = Carrying(b'{"entries":[]}')
    sent = await write_answer(db, coordinator, signed((FORWARDED_BY.encode(), b"514"), (CARRY_REQUEST.lower().encode(), held)))
    assert CARRIES not in dict(sent[0]["headers"]) and sent[1]["body"] == b"{}"
    assert coordinator.awaited == [(db.last_lsn, 514)]


async def test_an_answer_without_a_body_carries_nothing_and_hurries_the_stream(db):
    # A deletion answers 204, which HTTP gives no body: an entry wrapped into it made the follower's
    # client fail to read the answer (tests/cluster/test_account_control.py).
    coordinator = Carrying(b'{"entries":[]}')
    held = (CARRY_REQUEST.lower().encode(), str(db.last_lsn).encode())
    sent = await write_answer(db, coordinator, signed((FORWARDED_BY.encode(), b"514"), held), status=204)
    assert sent[0]["status"] == 204 and CARRIES not in dict(sent[0]["headers"]) and sent[1]["body"] == b""
    assert coordinator.awaited == [(db.last_lsn, 514)]
