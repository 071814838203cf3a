"""Every number a peer sends is bounded once, at the edge: a 400 (InvalidInput), never a 500, never adopted."""

from __future__ import annotations

import json

import pytest

from talentnest.cluster import logwire, wire
from talentnest.errors import InvalidInput
from talentnest.store import LogEntry

HEARTBEAT = {"id": 514, "url": "http://10.0.2.2:3000", "term": 3, "role": "leader", "last_lsn": 7, "last_term": 3}
REPLICATE = {
    "leader_id": 515,
    "term": 4,
    "leader_url": "http://10.0.2.3:3000",
    "prev_lsn": 1,
    "prev_term": 4,
    "leader_last_lsn": 2,
    "leader_first_lsn": 1,
    "history": [[4, 1]],
    "entries": [{"lsn": 2, "term": 4, "timestamp": "t", "changes": []}],
}
VOTE = {"term": 5, "candidate_id": 515, "candidate_url": "http://10.0.2.3:3000", "last_lsn": 9, "last_term": 4}

NOT_WHOLE_NUMBERS = [99999999999999999999999, 2**63, -1, 1.5, float("inf"), True, "7", None, [1], {"n": 1}]


@pytest.mark.parametrize("bad", NOT_WHOLE_NUMBERS)
@pytest.mark.parametrize(
    ("parse", "good", "field"),
    [
        (wire.NodeInfo.parse, HEARTBEAT, "term"),
        (wire.NodeInfo.parse, HEARTBEAT, "last_lsn"),
        (wire.VoteRequest.parse, VOTE, "term"),
        (wire.VoteRequest.parse, VOTE, "last_lsn"),
        (logwire.ReplicateRequest.parse, REPLICATE, "term"),
        (logwire.ReplicateRequest.parse, REPLICATE, "prev_lsn"),
        (logwire.ReplicateRequest.parse, REPLICATE, "leader_last_lsn"),
    ],
)
def test_a_number_that_is_not_a_64_bit_whole_number_is_refused(parse, good, field, bad):
    parse(good)  # the good form parses
    if bad is None and field in ("last_lsn",):
        return  # an absent last_lsn means 0 in a heartbeat
    with pytest.raises(InvalidInput, match=field):
        parse({**good, field: bad})


def test_a_json_number_too_big_or_not_whole_is_a_bad_request_not_a_crash():
    for text in ('{"term": 1e400}', '{"term": 99999999999999999999999}', '{"term": 1.0}'):
        with pytest.raises(InvalidInput):
            wire.VoteRequest.parse({**VOTE, **wire.decode(text.encode())})


def test_node_ids_are_bounded_like_node_id():
    with pytest.raises(InvalidInput, match="id"):
        wire.NodeInfo.parse({**HEARTBEAT, "id": 2**31})
    with pytest.raises(InvalidInput, match="leader_id"):
        wire.NodeInfo.parse({**HEARTBEAT, "leader_id": -5})


def test_entries_and_histories_are_checked_item_by_item():
    with pytest.raises(InvalidInput):
        logwire.ReplicateRequest.parse({**REPLICATE, "entries": [{"lsn": 2**64, "term": 1, "changes": []}]})
    with pytest.raises(InvalidInput):
        logwire.ReplicateRequest.parse({**REPLICATE, "history": [[1, 2, 3, 4]]})
    with pytest.raises(InvalidInput):
        logwire.ReplicateRequest.parse({**REPLICATE, "history": [[True, 1]]})
    with pytest.raises(InvalidInput):
        logwire.ReplicateRequest.parse({**REPLICATE, "entries": "all of them"})


def test_a_role_or_reason_outside_the_protocol_is_refused():
    with pytest.raises(InvalidInput, match="role"):
        wire.NodeInfo.parse({**HEARTBEAT, "role": "dictator"})
    with pytest.raises(InvalidInput, match="reason"):
        logwire.ReplicateReply.parse({"term": 1, "success": True, "applied_lsn": 1, "reason": "because"})


def test_messages_survive_their_own_wire_form():
    info = wire.NodeInfo.parse(HEARTBEAT)
    assert wire.NodeInfo.parse(json.loads(info.to_bytes())) == info
    request = logwire.ReplicateRequest.parse(REPLICATE)
    body = logwire.replicate_body(
        leader_id=request.leader_id,
        term=request.term,
        leader_url=request.leader_url,
        prev_lsn=request.prev_lsn,
        prev_term=request.prev_term,
        prev_epoch=7,
        leader_last_lsn=request.leader_last_lsn,
        leader_last_term=request.leader_last_term,
        leader_first_lsn=request.leader_first_lsn,
        history=request.history,
        entries=request.entries,
    )
    again = logwire.ReplicateRequest.parse(wire.decode(body))
    assert again.prev_epoch == 7 and again.history == ((4, 1, 0),), "a history without epochs reads as epoch 0"
    assert again.entries == request.entries


@pytest.mark.parametrize("query", [{"after": "-1"}, {"after": "1e3"}, {"after": "99999999999999999999"}, {"limit": "0"}])
def test_query_numbers_are_bounded(query):
    with pytest.raises(InvalidInput):
        wire.query_integer(
            query, next(iter(query)), 0, low=1 if "limit" in query else 0, high=10_000 if "limit" in query else wire.MAX_INT64
        )


def test_a_body_that_is_not_a_json_object_is_refused():
    for body in (b"[1]", b"nope", b'"text"', b"[" * 100_000):
        with pytest.raises(InvalidInput):
            wire.decode(body)


def _leaders_body(entries) -> bytes:
    return logwire.replicate_body(
        leader_id=515, term=4, leader_url="http://10.0.2.3:3000", prev_lsn=1, prev_term=4, prev_epoch=7,
        leader_last_lsn=3, leader_last_term=4, leader_first_lsn=1, history=[(4, 1, 7)], entries=entries,
    )  # fmt: skip


def test_a_replicate_body_in_the_leaders_form_is_parsed_once_and_its_changes_kept_as_sent():
    changes = [{"operation": "INSERT", "table": "posts", "data": {"id": 1, "content": 'é "quoted" \\ [x]', "n": 1.5}}]
    sent = [LogEntry(2, 4, "2026-01-01T00:00:00.000Z", 2, json.dumps(changes, separators=(",", ":"), ensure_ascii=False), 7)]
    sent.append(LogEntry(3, 4, "2026-01-01T00:00:01.000Z", 2, "[]", 7))
    body = _leaders_body(sent)

    decoded = logwire.decode_replicate(body)
    fast = logwire.ReplicateRequest.parse(decoded)
    slow = logwire.ReplicateRequest.parse(wire.decode(body))

    assert all(type(item) is tuple for item in decoded["entries"]), "the leader's form takes the one-parse path"
    assert fast == slow and fast.entries == tuple(sent)
    assert [e.changes for e in fast.entries] == [e.changes for e in sent]  # the text as the leader stored it
    assert fast.entries[0].decoded == changes and slow.entries[0].decoded is None


def test_a_replicate_body_in_any_other_json_form_is_still_accepted_or_refused_as_before():
    seed = json.dumps({**REPLICATE, "entries": [{"changes": [], "term": 4, "lsn": 2, "timestamp": "t"}]}, indent=2).encode()
    assert logwire.ReplicateRequest.parse(logwire.decode_replicate(seed)) == logwire.ReplicateRequest.parse(wire.decode(seed))
    spaced = _leaders_body([LogEntry(2, 4, "t", 2, "[ ]", 7)]).replace(b'"lsn":2', b'"lsn": 2')
    assert logwire.ReplicateRequest.parse(logwire.decode_replicate(spaced)).entries[0].changes == "[]"
    for bad in (
        b"[1]",
        b"nope",
        _leaders_body([LogEntry(2, 4, "t", 2, "[", 7)]),
        _leaders_body([LogEntry(2, 4, "t", 2, "[]", 7)])[:-1],
    ):
        with pytest.raises(InvalidInput):
            logwire.decode_replicate(bad)
