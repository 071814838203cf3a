"""The replication wire: the replicate call and log pages, encoded by the leader and parsed once by
the follower (docs/cluster.md, "Replication"). Each field is bounded as every peer message is
(``wire``); entries travel as the JSON text they are stored as, and the follower keeps that text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from talentnest.cluster.wire import (
    MAX_NODE_ID,
    MAX_TERM,
    MAX_URL,
    Message,
    TermHistory,
    decode,
    flag,
    history,
    integer,
    optional_integer,
    show,
    text,
)
from talentnest.errors import InvalidInput
from talentnest.store import LogEntry


def entries(value: Any) -> tuple[LogEntry, ...]:
    """Log entries from a decoded list; an item may be a pair (entry, the text its changes came as: see
    ``decode_replicate``), whose changes are then kept as that text instead of being written out again."""
    if not isinstance(value, list):
        raise InvalidInput("entries must be a list")
    return tuple(
        LogEntry.from_dict(item[0], changes_text=item[1]) if type(item) is tuple else LogEntry.from_dict(item) for item in value
    )


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_DECODER = json.JSONDecoder(parse_constant=_no_constant)


# The leader's own form of a replicate body (``replicate_body``, ``LogEntry.to_json``): where its entries
# begin, and the head of each entry up to its changes.
_ENTRIES = ',"entries":['
_ENTRY_HEAD = re.compile(r'\{"lsn":(\d+),"term":(\d+),"epoch":(\d+),"timestamp":"([^"\\]*)","schema_version":(\d+),"changes":')
_scan = _DECODER.scan_once


def decode_replicate(body: bytes) -> dict[str, Any]:
    """A replicate body as ``decode`` gives it, but parsed once: in the leader's own form, each entry of
    ``entries`` comes as a pair (the entry, the JSON text of its changes exactly as sent), which the
    follower validates, applies and stores without writing it out again. Any other body (the seed's
    JSON, another key order, whitespace, a constant such as NaN, anything malformed) is left to
    ``decode``, which accepts or refuses it as it always did."""
    try:
        s = body.decode("utf-8")
        k = s.find(_ENTRIES)
        payload = json.loads(s[:k] + "}") if k > 0 else None
        if not isinstance(payload, dict) or "entries" in payload:
            return decode(body)
        items: list[Any] = []
        i = k + len(_ENTRIES)
        while s[i] != "]":
            head = _ENTRY_HEAD.match(s, i)
            if head is None:
                return decode(body)
            start = head.end()
            changes, end = _scan(s, start)
            if s[end] != "}":
                return decode(body)
            lsn, term, epoch, timestamp, schema_version = head.groups()
            entry = {"lsn": int(lsn), "term": int(term), "epoch": int(epoch), "timestamp": timestamp}
            entry.update(schema_version=int(schema_version), changes=changes)
            items.append((entry, s[start:end]))
            i = end + 1
            if s[i] == ",":
                i += 1
            elif s[i] != "]":
                return decode(body)
        if s[i + 1 :] != "}":
            return decode(body)
    except (ValueError, IndexError, RecursionError, StopIteration):
        return decode(body)
    payload["entries"] = items
    return payload


@dataclass(frozen=True)
class ReplicateRequest:
    """A batch of entries from the leader, with where it starts and what the leader holds."""

    leader_id: int
    term: int
    leader_url: str
    prev_lsn: int
    prev_term: int  # -1: the leader no longer knows (its log was trimmed there)
    prev_epoch: int | None  # None from a release before epochs
    leader_last_lsn: int
    leader_last_term: int
    leader_first_lsn: int
    history: TermHistory | None  # sent until the follower has checked the two histories agree
    entries: tuple[LogEntry, ...]

    @classmethod
    def parse(cls, payload: Mapping[str, Any]) -> ReplicateRequest:
        raw_history = payload.get("history")
        return cls(
            leader_id=integer(payload, "leader_id", high=MAX_NODE_ID),
            term=integer(payload, "term", high=MAX_TERM),
            leader_url=text(payload, "leader_url", max_length=MAX_URL),
            prev_lsn=integer(payload, "prev_lsn"),
            prev_term=integer(payload, "prev_term", low=-1, high=MAX_TERM),
            prev_epoch=optional_integer(payload, "prev_epoch"),
            leader_last_lsn=integer(payload, "leader_last_lsn"),
            leader_last_term=integer(payload, "leader_last_term", default=0, high=MAX_TERM),
            leader_first_lsn=integer(payload, "leader_first_lsn"),
            history=None if raw_history is None else history(raw_history),
            entries=entries(payload.get("entries")),
        )


def replicate_body(
    *,
    leader_id: int,
    term: int,
    leader_url: str,
    prev_lsn: int,
    prev_term: int,
    prev_epoch: int,
    leader_last_lsn: int,
    leader_last_term: int,
    leader_first_lsn: int,
    history: Sequence[tuple[int, ...]] | None,
    entries: Sequence[LogEntry],
) -> bytes:
    """The wire form of a ``ReplicateRequest``; entries are spliced in as the text they are stored as."""
    return (
        f'{{"leader_id":{leader_id},"term":{term},"leader_url":{json.dumps(leader_url)},'
        f'"prev_lsn":{prev_lsn},"prev_term":{prev_term},"prev_epoch":{prev_epoch},'
        f'"leader_last_lsn":{leader_last_lsn},"leader_last_term":{leader_last_term},"leader_first_lsn":{leader_first_lsn},'
        f'"history":{json.dumps([list(h) for h in history]) if history is not None else "null"},'
        f'"entries":[{",".join(e.to_json() for e in entries)}]}}'
    ).encode()


@dataclass(frozen=True)
class ReplicateReply(Message):
    """A follower's answer: its term, whether it applied the batch, what it holds, and why not.

    ``reason`` is one of ``applied``, ``gap``, ``stale_term``, ``history_needed``, ``syncing``, and
    ``unavailable`` (the follower could not apply: its disk is full or failing; try again later)."""

    term: int
    success: bool
    applied_lsn: int
    reason: str

    REASONS = ("applied", "gap", "stale_term", "history_needed", "syncing", "unavailable")

    @classmethod
    def parse(cls, payload: Mapping[str, Any]) -> ReplicateReply:
        reason = text(payload, "reason", default="")
        if reason not in cls.REASONS:
            raise InvalidInput(f"reason must be one of {', '.join(cls.REASONS)}, got {show(reason)}")
        return cls(
            term=integer(payload, "term", high=MAX_TERM),
            success=flag(payload, "success"),
            applied_lsn=integer(payload, "applied_lsn"),
            reason=reason,
        )


@dataclass(frozen=True)
class LogPage:
    """``GET /cluster/log``: entries after a position, with what the serving node holds."""

    last_lsn: int
    last_term: int
    first_lsn: int
    history: TermHistory
    entries: tuple[LogEntry, ...]

    @classmethod
    def parse(cls, payload: Mapping[str, Any]) -> LogPage:
        return cls(
            last_lsn=integer(payload, "last_lsn"),
            last_term=integer(payload, "last_term", high=MAX_TERM),
            first_lsn=integer(payload, "first_lsn"),
            history=history(payload.get("history")),
            entries=entries(payload.get("entries")),
        )


def log_page_body(
    *, last_lsn: int, last_term: int, first_lsn: int, history: Sequence[tuple[int, ...]], entries: Sequence[LogEntry]
) -> bytes:
    return (
        f'{{"last_lsn":{last_lsn},"last_term":{last_term},"first_lsn":{first_lsn},'
        f'"history":{json.dumps([list(h) for h in history])},"entries":[{",".join(e.to_json() for e in entries)}]}}'
    ).encode()
