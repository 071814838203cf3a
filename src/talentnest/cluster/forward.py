"""Writes that reach a follower: proxied to the leader, the leader's answer relayed once this node holds
the write (read-your-writes), and cut short when the leader stops answering (docs/cluster.md)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from dataclasses import dataclass

from talentnest.cluster.api import request_target
from talentnest.cluster.transport import PeerRefused, Reply, refused_signature
from talentnest.errors import ClusterError, NoLeader, NotReady, PeerUnreachable
from talentnest.http_errors import error_body, status_of
from talentnest.limits import BODY_SCOPE_KEY
from talentnest.store import Database

log = logging.getLogger("talentnest.forward")

APPLY_WAIT = 2.0  # seconds a forwarded write waits to be applied here (read-your-writes)
LEADER_WAIT = 3.0  # seconds a write waits for a leader (failover, handover)
FORWARD_TIMEOUT = 15.0  # the leader's answer, at the latest (sooner when it is suspected)
HOP_BY_HOP = {
    b"connection",
    b"keep-alive",
    b"transfer-encoding",
    b"content-length",
    b"date",
    b"server",
    b"x-node-id",
    b"x-node-role",
    b"x-cluster-lsn",
    b"x-cluster-entry",
    b"x-cluster-carries-entry",
}
# On a write's answer from the leader: "<term>.<epoch>" of the entry at its X-Cluster-LSN (docs/cluster.md).
ENTRY_HEADER = b"x-cluster-entry"
# A follower asks for the write's entry in the leader's answer, saying which LSN it holds (CARRY_REQUEST); an
# answer that carries the entries it lacks says so (CARRIES) and its body is "<length>\n" + their replicate
# body + the product's answer, all under the answer's signature (docs/cluster.md, "Writes and replication").
CARRY_REQUEST = "X-TalentNest-Carry-Entry"
CARRIES = b"x-cluster-carries-entry"
MAX_CARRIED = 16 * 1024 * 1024
FORWARDED_HEADERS = ("content-type", "authorization", "idempotency-key", "accept", "accept-language", "user-agent")


def header(scope: dict, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


@dataclass
class ForwardStats:
    """Writes forwarded to the leader, and forwards that failed (for /metrics)."""

    forwarded: int = 0
    failures: int = 0


class Responder:
    """Answers the cluster layer gives itself: every one says which node answered and at which LSN."""

    def __init__(self, coordinator, db: Database):
        self.coordinator = coordinator
        self.db = db

    def node_headers(self, lsn: int | None = None) -> list[tuple[bytes, bytes]]:
        c = self.coordinator
        return [
            (b"x-node-id", str(c.node_id).encode()),
            (b"x-node-role", c.role_name.encode()),
            (b"x-cluster-lsn", str(self.db.last_lsn if lsn is None else lsn).encode()),
        ]

    async def send_error(self, send, status: int, code: str, message: str, *, retry: bool = False, headers=()) -> None:
        body = error_body(code, message)
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *self.node_headers(),
            *headers,
        ]
        if retry:
            headers.append((b"retry-after", b"1"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def error(self, send, error: ClusterError | NotReady) -> None:
        """A cluster condition the client may retry: its status, the error shape, Retry-After."""
        await self.send_error(send, status_of(error), error.code, error.message, retry=True)


class Forwarder:
    """Sends a write to the leader (``coordinator``: the middleware's Coordinator) and relays its answer."""

    def __init__(self, coordinator, db: Database, respond: Responder, stats: ForwardStats):
        self.coordinator = coordinator
        self.db = db
        self.respond = respond
        self.stats = stats

    async def write_at_leader(self, scope, send, write_here) -> None:
        """Find the leader (waiting for an election where one can happen) and forward; ``write_here``
        runs the write on this node when it turns out to lead."""
        c = self.coordinator
        refused_by: str | None = None
        for attempt in range(3):
            # Wait for an election only where one can happen: cut off from a majority, answer at once.
            wait = LEADER_WAIT if c.leader_expected() else 0.0
            leader_url = await c.wait_for_leader(wait, other_than=refused_by)
            if leader_url is None:
                await self.respond.error(send, c.no_leader_error())
                return
            if leader_url == c.url:
                await write_here()
                return
            try:
                reply = await self._forward(scope, leader_url)
            except PeerRefused:
                # Nobody listens there any more: nothing was sent, so look for the new leader.
                refused_by = leader_url
                continue
            except PeerUnreachable as exc:
                self.stats.failures += 1
                log.warning("forward: %s %s to leader %s failed: %s", scope["method"], scope["path"], leader_url, exc)
                await self.respond.error(
                    send,
                    NoLeader(
                        f"the leader did not answer ({exc}); the write may or may not have been applied: "
                        "retry with the same Idempotency-Key",
                        code="leader_unreachable",
                    ),
                )
                return
            if reply.status == 503 and _error_code(reply) == "not_leader" and attempt < 2:
                refused_by = leader_url  # leadership moved while we forwarded; nothing was written there
                continue
            if refused_signature(reply.status, reply.body):
                # The leader refused this node's signature (our clock or key differs): nothing ran there,
                # and a 401 would tell the client its own token is bad (docs/cluster.md, "Trust between nodes").
                self.stats.failures += 1
                why = _error_message(reply)
                log.warning("forward: leader %s refused this node's signature: %s", leader_url, why)
                message = f"the leader ({leader_url}) refuses this node's signature ({why}); nothing was written: retry"
                await self.respond.error(send, NoLeader(message))
                return
            await self._relay(send, reply)
            return
        self.stats.failures += 1
        await self.respond.error(send, c.no_leader_error())

    async def _forward(self, scope, leader_url: str) -> Reply:
        headers = {name: value for name in FORWARDED_HEADERS if (value := header(scope, name.encode())) is not None}
        client = scope.get("client")
        headers["X-Forwarded-For"] = client[0] if client else "unknown"
        headers["X-TalentNest-Forwarded-By"] = str(self.coordinator.node_id)
        headers[CARRY_REQUEST] = str(self.db.last_lsn)  # what it holds: the entries it lacks can ride in the answer
        self.stats.forwarded += 1
        call = asyncio.ensure_future(
            self.coordinator.client.call(
                scope["method"],
                leader_url,
                request_target(scope),
                body=scope.get(BODY_SCOPE_KEY, b""),
                timeout=FORWARD_TIMEOUT,
                headers=headers,
            )
        )
        lost = self.coordinator.watch_leader(leader_url, call)
        try:
            return await call
        except asyncio.CancelledError:
            if lost():
                raise PeerUnreachable(f"leader {leader_url} stopped answering heartbeats while it had the write") from None
            raise

    async def _relay(self, send, reply: Reply) -> None:
        if reply.headers.get(CARRIES.decode()) is not None:
            parts = unwrap_carried(reply.body) if reply.verified else None
            if parts is None:
                # The product's answer cannot be told from what is wrapped around it (or the answer's
                # signature was not checked): nothing of it is relayed or applied.
                await self.respond.error(
                    send,
                    ClusterError(
                        "the leader answered the write with a body that carries its entry but does not read as one, "
                        "or without a checked signature; retry with the same Idempotency-Key (it is not applied twice)",
                        code="write_unverified",
                    ),
                )
                return
            entry, body = parts
            reply = dataclasses.replace(reply, body=body)
            if reply.status < 400:
                await self.coordinator.apply_carried(entry)
        lsn = None
        raw_lsn = reply.headers.get("X-Cluster-LSN")
        if raw_lsn and raw_lsn.isdigit() and reply.status < 400:
            lsn = int(raw_lsn)
            # Read-your-writes: answer once this node holds the write the client just made.
            if not await self.coordinator.wait_applied(lsn, APPLY_WAIT):
                why = self.coordinator.unhealthy() or f"it is still at LSN {self.db.last_lsn}"
                await self.respond.error(
                    send,
                    NotReady(
                        f"the leader applied the write (LSN {lsn}), but node {self.coordinator.node_id} does not hold it "
                        f"yet ({why}); read it with X-Min-LSN: {lsn} on another node, or retry with the same "
                        "Idempotency-Key (it is not applied twice)",
                        code="not_applied_here",
                    ),
                )
                return
            raw_entry = reply.headers.get("X-Cluster-Entry")
            entry = _entry_of(raw_entry)
            if raw_entry is not None and entry is None:
                # A peer's field is checked like any input: an entry this node cannot read cannot be
                # checked, so the answer is not relayed as a success.
                await self.respond.error(
                    send,
                    ClusterError(
                        f"the leader answered the write (LSN {lsn}) naming its entry as {raw_entry[:40]!r}, which is "
                        "not <term>.<epoch>; whether this node holds that write cannot be told: retry with the same "
                        "Idempotency-Key (it is not applied twice)",
                        code="write_unverified",
                    ),
                )
                return
            if entry is not None and (self.db.last_lsn < lsn or self.db.position_at(lsn) != entry):
                # This node holds another entry at that LSN: the leader that answered was deposed and its
                # write replaced (async mode, a failover before it was sent on). Relaying the answer would
                # acknowledge what the cluster does not hold (simulator seed 3874: a signup's token whose
                # account was written again with another key).
                await self.respond.error(
                    send,
                    ClusterError(
                        f"the write (LSN {lsn}) was lost with the leader that made it, before it reached this node; "
                        "retry with the same Idempotency-Key to write it again",
                        code="write_lost",
                    ),
                )
                return
        headers = [
            (k.lower().encode("latin-1"), v.encode("latin-1"))
            for k, v in reply.headers.items()
            if k.lower().encode("latin-1") not in HOP_BY_HOP
        ]
        leader_id = reply.headers.get("X-Node-Id", "")
        headers += [
            (b"content-length", str(len(reply.body)).encode()),
            (b"x-leader-id", leader_id.encode("latin-1")),
            *self.respond.node_headers(lsn),
        ]
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        await send({"type": "http.response.body", "body": reply.body})


def wrap_carried(entry: bytes, body: bytes) -> bytes:
    return b"%d\n" % len(entry) + entry + body


def unwrap_carried(body: bytes) -> tuple[bytes, bytes] | None:
    """(the entry's replicate body, the product's answer) of an answer that carries its entry; None if malformed."""
    head, newline, rest = body.partition(b"\n")
    if not newline or not head.isdigit() or len(head) > 9 or int(head) > min(len(rest), MAX_CARRIED):
        return None
    size = int(head)
    return rest[:size], rest[size:]


def _entry_of(value: str | None) -> tuple[int, int] | None:
    """The leader's "<term>.<epoch>" of a write's entry; None when absent (an older release) or malformed."""
    if value is None:
        return None
    term, _, epoch = value.partition(".")
    if not (term.isdigit() and epoch.isdigit() and len(term) <= 19 and len(epoch) <= 19):
        return None
    return int(term), int(epoch)


def _error_code(reply: Reply) -> str | None:
    return _error_field(reply, "code")


def _error_message(reply: Reply) -> str | None:
    return _error_field(reply, "message")


def _error_field(reply: Reply, name: str) -> str | None:
    try:
        return reply.json()["error"][name]
    except (ValueError, KeyError, TypeError):
        return None
