"""The node-to-node messages: each parsed and bounded once, at the edge, into a frozen value.

Every number a peer sends is checked here (STYLE.md, "A core a simulator can drive"): LSNs are
integers in SQLite's 64-bit range, terms up to ``MAX_TERM`` (2^62), node IDs fit ``NODE_ID``'s
range, and a JSON number that is not an integer (``1e400``, ``1.5``, ``true``) is refused. A message that fails any check raises
``InvalidInput`` (answered 400) and nothing of it is used. The core sees only these values.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from talentnest.errors import InvalidInput

MAX_INT64 = 2**63 - 1
# Terms stop well short of SQLite's limit, so that a node can always stand for the next one: a term
# this high is refused from a peer like any out-of-range number (never adopted).
MAX_TERM = 2**62
# Nor may one message move a node's term further than this (a term within the range can still be the
# top of it, and the next election's term would then be out of range for ever): 256 restore
# generations (docs/backup.md), far beyond the elections of any real cluster's life.
MAX_TERM_STEP = 2**40
MAX_NODE_ID = 2**31 - 1
MAX_URL = 256
MAX_TEXT = 1000
MAX_KEY_IDS = 16
MAX_HISTORY = 1_000_000  # terms in a term history: one per leadership, far beyond any real cluster

TermHistory = tuple[tuple[int, int, int], ...]  # (term, start_lsn, epoch)


class _HasTerm(Protocol):
    @property
    def term(self) -> int: ...


class _TermHolder(_HasTerm, Protocol):
    def term_in_reach(self, term: int) -> bool: ...


_Termed = TypeVar("_Termed", bound=_HasTerm)


def in_reach(node: _TermHolder, message: _Termed) -> _Termed:
    """``message``, unless its term is further above ``node``'s than one message may move it (a term at
    the top of the range would leave no next term to elect): refused whole, InvalidInput."""
    if not node.term_in_reach(message.term):
        raise InvalidInput(f"term must be at most {MAX_TERM_STEP} above this node's term {node.term}, got {message.term}")
    return message


def integer(payload: Mapping[str, Any], name: str, *, low: int = 0, high: int = MAX_INT64, default: int | None = None) -> int:
    """``payload[name]`` as a whole number in [low, high]; ``default`` when absent (if given)."""
    if name not in payload or payload[name] is None:
        if default is None:
            raise InvalidInput(f"{name} is required")
        return default
    return _bounded(payload[name], name, low, high)


def _bounded(value: Any, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{name} must be a whole number, got {show(value)}")
    if not low <= value <= high:
        raise InvalidInput(f"{name} must be {low}-{high}, got {show(value)}")
    return value


def optional_integer(payload: Mapping[str, Any], name: str, *, high: int = MAX_INT64) -> int | None:
    value = payload.get(name)
    return None if value is None else _bounded(value, name, 0, high)


def text(payload: Mapping[str, Any], name: str, *, default: str | None = None, max_length: int = MAX_TEXT) -> str:
    value = payload.get(name, default)
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be a string, got {show(value)}")
    if len(value) > max_length:
        raise InvalidInput(f"{name} must be at most {max_length} characters")
    return value


def flag(payload: Mapping[str, Any], name: str) -> bool:
    value = payload.get(name, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise InvalidInput(f"{name} must be true or false, got {show(value)}")
    return value


def show(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= 40 else shown[:37] + "..."


def history(value: Any, name: str = "history") -> TermHistory:
    """A term history: ``[[term, start_lsn, epoch], ...]`` (``epoch`` absent from a release before
    epochs: 0), every number bounded."""
    if not isinstance(value, list) or len(value) > MAX_HISTORY:
        raise InvalidInput(f"{name} must be a list of [term, start_lsn, epoch] items")
    items = []
    for item in value:
        if not isinstance(item, list | tuple) or len(item) not in (2, 3):
            raise InvalidInput(f"{name} must be a list of [term, start_lsn, epoch] items")
        term, start = _bounded(item[0], f"{name} term", 0, MAX_TERM), _bounded(item[1], f"{name} start_lsn", 0, MAX_INT64)
        items.append((term, start, _bounded(item[2], f"{name} epoch", 0, MAX_INT64) if len(item) == 3 else 0))
    return tuple(items)


def decode(body: bytes) -> dict[str, Any]:
    """A message body as a JSON object (InvalidInput for anything else)."""
    try:
        payload = json.loads(body)
    except ValueError:
        raise InvalidInput("body is not valid JSON") from None
    except RecursionError:
        # Node-to-node bodies skip the client depth check (they are large and signed); a signed
        # one nested absurdly deep is still only a bad request.
        raise InvalidInput("body nests too deeply") from None
    if not isinstance(payload, dict):
        raise InvalidInput("body must be a JSON object")
    return payload


def encode(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


class Message:
    """A frozen message that knows its JSON form."""

    def as_dict(self) -> dict[str, Any]:
        # Every field is a scalar or a tuple of text, never a message: a shallow copy is the JSON form
        # (dataclasses.asdict deep-copies each field, 20 us of a heartbeat's answer).
        return dict(vars(self))

    def to_bytes(self) -> bytes:
        return encode(self.as_dict())


@dataclass(frozen=True)
class NodeInfo(Message):
    """What a node says of itself in every heartbeat, in its answer to one, and when it leaves."""

    id: int
    url: str
    term: int
    role: str
    leader_id: int | None
    last_lsn: int
    last_term: int
    ready: bool
    leaving: bool
    eligible: bool = True  # absent from a release before eligibility: it may lead
    incarnation: str = ""  # random per process start: tells two processes with one ID apart
    started_ms: int = 0  # when that process started (Unix milliseconds): the later of two clashing refuses
    wall_ms: int = 0  # the sender's clock when it sent this (to measure skew)
    # The ``kid`` of every JWT key the node accepts (None from an older release), so that during a key
    # rotation tokens are signed with a key every node accepts.
    token_keys: tuple[str, ...] | None = None
    votes: bool = True  # False while it has no durable state (new, or its disk lost); absent: it votes

    @classmethod
    def parse(cls, payload: Mapping[str, Any]) -> NodeInfo:
        role = text(payload, "role", default="follower")
        if role not in ("leader", "follower", "candidate"):
            raise InvalidInput(f"role must be leader, follower or candidate, got {show(role)}")
        return cls(
            id=integer(payload, "id", high=MAX_NODE_ID),
            url=text(payload, "url", default="", max_length=MAX_URL),
            term=integer(payload, "term", high=MAX_TERM),
            role=role,
            leader_id=optional_integer(payload, "leader_id", high=MAX_NODE_ID),
            last_lsn=integer(payload, "last_lsn", default=0),
            last_term=integer(payload, "last_term", default=0, high=MAX_TERM),
            ready=flag(payload, "ready"),
            leaving=flag(payload, "leaving"),
            eligible=flag(payload, "eligible") if "eligible" in payload else True,
            votes=flag(payload, "votes") if "votes" in payload else True,
            incarnation=text(payload, "incarnation", default="", max_length=64),
            started_ms=integer(payload, "started_ms", default=0),
            wall_ms=integer(payload, "wall_ms", default=0),
            token_keys=_key_ids(payload.get("token_keys")),
        )


def _key_ids(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or len(value) > MAX_KEY_IDS or not all(isinstance(k, str) and 0 < len(k) <= 64 for k in value):
        raise InvalidInput(f"token_keys must be a list of at most {MAX_KEY_IDS} key ids")
    return tuple(value)


@dataclass(frozen=True)
class VoteRequest(Message):
    term: int
    candidate_id: int
    candidate_url: str
    last_lsn: int
    last_term: int
    handover_from: int | None = None
    pre_vote: bool = False

    @property
    def log_position(self) -> tuple[int, int]:
        return (self.last_term, self.last_lsn)

    @classmethod
    def parse(cls, payload: Mapping[str, Any]) -> VoteRequest:
        return cls(
            term=integer(payload, "term", low=1, high=MAX_TERM),
            candidate_id=integer(payload, "candidate_id", high=MAX_NODE_ID),
            candidate_url=text(payload, "candidate_url", default="", max_length=MAX_URL),
            last_lsn=integer(payload, "last_lsn"),
            last_term=integer(payload, "last_term", high=MAX_TERM),
            handover_from=optional_integer(payload, "handover_from", high=MAX_NODE_ID),
            pre_vote=flag(payload, "pre_vote"),
        )


@dataclass(frozen=True)
class VoteReply(Message):
    term: int
    granted: bool
    reason: str

    @classmethod
    def parse(cls, payload: Mapping[str, Any]) -> VoteReply:
        return cls(
            term=integer(payload, "term", high=MAX_TERM),
            granted=flag(payload, "granted"),
            reason=text(payload, "reason", default=""),
        )


@dataclass(frozen=True)
class HandoverRequest(Message):
    term: int
    leader_id: int
    last_lsn: int

    @classmethod
    def parse(cls, payload: Mapping[str, Any]) -> HandoverRequest:
        return cls(
            term=integer(payload, "term", high=MAX_TERM),
            leader_id=integer(payload, "leader_id", high=MAX_NODE_ID),
            last_lsn=integer(payload, "last_lsn"),
        )


@dataclass(frozen=True)
class HandoverReply(Message):
    accepted: bool
    reason: str

    @classmethod
    def parse(cls, payload: Mapping[str, Any]) -> HandoverReply:
        return cls(accepted=flag(payload, "accepted"), reason=text(payload, "reason", default=""))


def query_integer(params: Mapping[str, str], name: str, default: int, *, low: int = 0, high: int = MAX_INT64) -> int:
    """A whole-number query parameter in [low, high] (``after``, ``limit``); InvalidInput otherwise."""
    raw = params.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 19:
        raise InvalidInput(f"{name} must be a whole number {low}-{high}, got {show(raw)}")
    return _bounded(int(raw), name, low, high)
