"""Every number a peer sends is bounded once, at the edge: a 400 (InvalidInput), never a 500, never adopted."""

from __future__ import annotations

import json

import pytest

from talentnest.cluster import wire
from talentnest.errors import InvalidInput

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
        (wire.ReplicateRequest.parse, REPLICATE, "term"),
        (wire.ReplicateRequest.parse, REPLICATE, "prev_lsn"),
        (wire.ReplicateRequest.parse, REPLICATE, "leader_last_lsn"),
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
        wire.ReplicateRequest.parse({**REPLICATE, "entries": [{"lsn": 2**64, "term": 1, "changes": []}]})
    with pytest.raises(InvalidInput):
        wire.ReplicateRequest.parse({**REPLICATE, "history": [[1, 2, 3, 4]]})
    with pytest.raises(InvalidInput):
        wire.ReplicateRequest.parse({**REPLICATE, "history": [[True, 1]]})
    with pytest.raises(InvalidInput):
        wire.ReplicateRequest.parse({**REPLICATE, "entries": "all of them"})


def test_a_role_or_reason_outside_the_protocol_is_refused():
    with pytest.raises(InvalidInput, match="role"):
        wire.NodeInfo.parse({**HEARTBEAT, "role": "dictator"})
    with pytest.raises(InvalidInput, match="reason"):
        wire.ReplicateReply.parse({"term": 1, "success": True, "applied_lsn": 1, "reason": "because"})


def test_messages_survive_their_own_wire_form():
    info = wire.NodeInfo.parse(HEARTBEAT)
    assert wire.NodeInfo.parse(json.loads(info.to_bytes())) == info
    request = wire.ReplicateRequest.parse(REPLICATE)
    body = wire.replicate_body(
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
    again = wire.ReplicateRequest.parse(wire.decode(body))
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
