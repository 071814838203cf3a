"""The seed's middleware.go: every response says which node answered and at which LSN; a write
reaching a follower is proxied to the leader; reads may wait for an LSN; writes may carry an
Idempotency-Key; in quorum mode a write is answered once a majority holds it.

A request that carries ``X-Cluster-Signature`` (a peer's call, on ``/cluster/*`` or a forwarded write)
is checked here, once, whatever its path: a bad one is answered 401 before anything runs, a good one
has its answer signed for its nonce (``auth``), unless the route signs a streamed answer itself.

It needs from the cluster only the narrow ``Coordinator`` protocol below, and from the product
only ``is_write(scope)``: it knows nothing of users or posts.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from talentnest.cluster import auth, idempotency
from talentnest.cluster.api import request_target
from talentnest.cluster.runtime import Transport
from talentnest.cluster.transport import PeerRefused, Reply
from talentnest.errors import ClusterError, NoLeader, NotReady, PeerUnreachable
from talentnest.http_errors import error_body, status_of
from talentnest.limits import BODY_SCOPE_KEY
from talentnest.store import Database, WriteReceipt, current_receipt

log = logging.getLogger("talentnest.forward")

FORWARDED_BY = "x-talentnest-forwarded-by"
FORWARDED_FOR = "x-forwarded-for"
FORWARDED_SCOPE_KEY = "talentnest.forwarded_by"
MIN_LSN_WAIT = 2.0  # seconds a read with X-Min-LSN may wait
APPLY_WAIT = 2.0  # seconds a forwarded write waits to be applied here (read-your-writes)
LEADER_WAIT = 3.0  # seconds a write waits for a leader (failover, handover)
QUORUM_WAIT = 5.0  # seconds a write waits for a majority in quorum mode
FORWARD_TIMEOUT = 15.0
_HOP_BY_HOP = {
    b"connection",
    b"keep-alive",
    b"transfer-encoding",
    b"content-length",
    b"date",
    b"server",
    b"x-node-id",
    b"x-node-role",
    b"x-cluster-lsn",
}
_FORWARDED_HEADERS = ("content-type", "authorization", "idempotency-key", "accept", "accept-language", "user-agent")


class Coordinator(Protocol):
    """What the middleware needs of the cluster.

    ``accepting_writes`` is True only on a leader with a valid lease; ``wait_for_leader`` returns
    a leader's URL or None after the timeout; ``wait_applied`` returns False if this node did not
    reach the LSN in time; ``wait_committed`` returns False if a majority did not hold the LSN
    in time (always True in async mode).
    """

    node_id: int
    url: str
    client: Transport | None
    wall: Callable[[], float]  # Unix time, as signatures count it

    @property
    def role_name(self) -> str: ...

    def accepting_writes(self) -> bool: ...

    async def wait_for_leader(self, timeout: float, other_than: str | None = None) -> str | None: ...

    async def wait_applied(self, lsn: int, timeout: float) -> bool: ...

    async def wait_committed(self, lsn: int, term: int, timeout: float) -> bool: ...

    def no_leader_error(self) -> NoLeader: ...

    def current_term(self) -> int: ...


def _header(scope: dict, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


@dataclass
class ForwardStats:
    """Writes forwarded to the leader, and forwards that failed (for /metrics)."""

    forwarded: int = 0
    failures: int = 0


class ClusterMiddleware:
    def __init__(
        self,
        app,
        *,
        coordinator: Coordinator,
        db: Database,
        is_write: Callable[[dict], bool],
        signatures: auth.RequestAuth,
        stats: ForwardStats | None = None,
    ):
        self.app = app
        self.coordinator = coordinator
        self.db = db
        self.is_write = is_write
        self.signatures = signatures
        self.stats = stats or ForwardStats()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header = _header(scope, b"x-cluster-signature")
        if header is not None:
            try:
                verified = self.signatures.check(
                    scope, header, scope["method"], request_target(scope), scope.get(BODY_SCOPE_KEY, b"")
                )
            except auth.SignatureError as exc:
                client = scope.get("client")
                log.warning(
                    "security: refused %s %s from %s: %s", scope["method"], scope["path"], client[0] if client else "?", exc
                )
                await self._send_error(
                    send, 401, "invalid_signature", str(exc), headers=[(b"www-authenticate", auth.HEADER.encode())]
                )
                return
            send = self._signing(send, verified)
        self._take_forwarding_headers(scope)
        if scope["path"].startswith("/cluster/") or not self.is_write(scope):
            await self._read(scope, receive, send)
            return
        await self._write(scope, receive, send)

    def _take_forwarding_headers(self, scope) -> None:
        """A signed request from a peer names its client (X-Forwarded-For), which becomes
        ``scope["client"]`` for what comes after (throttling); anyone else's forwarding headers
        are dropped, so a client can neither pretend to be a node nor choose its own address."""
        names = (FORWARDED_BY.encode(), FORWARDED_FOR.encode())
        headers = scope.get("headers", ())
        if not any(name in names for name, _ in headers):
            return
        if auth.RequestAuth.verified(scope) is None:
            scope["headers"] = [(name, value) for name, value in headers if name not in names]
            return
        scope[FORWARDED_SCOPE_KEY] = _header(scope, names[0])
        client = _header(scope, names[1])
        if client:
            # The peer wrote the address it saw; the last one is the only one it vouches for.
            scope["client"] = (client.split(",")[-1].strip(), 0)

    # --- responses -------------------------------------------------------------------------

    def _node_headers(self, lsn: int | None = None) -> list[tuple[bytes, bytes]]:
        c = self.coordinator
        return [
            (b"x-node-id", str(c.node_id).encode()),
            (b"x-node-role", c.role_name.encode()),
            (b"x-cluster-lsn", str(self.db.last_lsn if lsn is None else lsn).encode()),
        ]

    async def _send_error(self, send, status: int, code: str, message: str, *, retry: bool = False, headers=()) -> None:
        body = error_body(code, message)
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *self._node_headers(),
            *headers,
        ]
        if retry:
            headers.append((b"retry-after", b"1"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _error(self, send, error: ClusterError | NotReady) -> None:
        """A cluster condition the client may retry: its status, the error shape, Retry-After."""
        await self._send_error(send, status_of(error), error.code, error.message, retry=True)

    # --- reads -----------------------------------------------------------------------------

    async def _read(self, scope, receive, send) -> None:
        wanted = _header(scope, b"x-min-lsn")
        if wanted is not None:
            try:
                lsn = int(wanted)
                if lsn < 0:
                    raise ValueError
            except ValueError:
                await self._send_error(send, 400, "invalid_input", "X-Min-LSN must be a whole number")
                return
            if not await self.coordinator.wait_applied(lsn, MIN_LSN_WAIT):
                await self._error(
                    send,
                    NotReady(
                        f"node {self.coordinator.node_id} is at LSN {self.db.last_lsn}, behind the requested {lsn}; "
                        "retry, or read from the leader",
                        code="lsn_not_reached",
                    ),
                )
                return

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *self._node_headers()]}
            await send(message)

        await self.app(scope, receive, send_with_headers)

    # --- writes ----------------------------------------------------------------------------

    async def _write(self, scope, receive, send) -> None:
        c = self.coordinator
        forwarded_by = scope.get(FORWARDED_SCOPE_KEY)  # set only for a signed request from a peer
        if c.accepting_writes():
            await self._write_here(scope, receive, send, forwarded_by)
            return
        if forwarded_by is not None:
            # One hop only: the node that forwarded will look for the new leader itself.
            await self._error(send, ClusterError(f"node {c.node_id} is no longer the leader", code="not_leader"))
            return
        refused_by: str | None = None
        for attempt in range(3):
            leader_url = await c.wait_for_leader(LEADER_WAIT, other_than=refused_by)
            if leader_url is None:
                await self._error(send, c.no_leader_error())
                return
            if leader_url == c.url:
                await self._write_here(scope, receive, send, None)
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
                await self._error(
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
            await self._relay(send, reply)
            return
        self.stats.failures += 1
        await self._error(send, c.no_leader_error())

    def _signing(self, send, verified: auth.Verified):
        """``send``, but the answer is held until whole and leaves signed for the request's nonce (an answer
        that carries its own signature, a streamed one, passes as it is)."""
        start: dict[str, Any] = {}
        parts: list[bytes] = []
        digest = hashlib.sha256()

        async def signed_send(message) -> None:
            if message["type"] == "http.response.start":
                if any(k.lower() == b"x-cluster-signature" for k, _ in message.get("headers", [])):
                    start["passthrough"] = True
                    await send(message)
                else:
                    start.update(message)
                return
            if start.get("passthrough") or message["type"] != "http.response.body":
                await send(message)
                return
            part = message.get("body", b"")
            digest.update(part)
            parts.append(part)
            if message.get("more_body", False):
                return
            headers = list(start.get("headers", []))
            signature = self.signatures.sign_answer(verified, start["status"], digest.hexdigest())
            if signature is not None:
                headers.append((b"x-cluster-signature", signature.encode()))
            await send({**start, "headers": headers})
            while parts:
                part = parts.pop(0)
                await send({"type": "http.response.body", "body": part, "more_body": bool(parts)})

        return signed_send

    async def _forward(self, scope, leader_url: str) -> Reply:
        headers = {name: value for name in _FORWARDED_HEADERS if (value := _header(scope, name.encode())) is not None}
        client = scope.get("client")
        headers["X-Forwarded-For"] = client[0] if client else "unknown"
        headers["X-TalentNest-Forwarded-By"] = str(self.coordinator.node_id)
        self.stats.forwarded += 1
        return await self.coordinator.client.call(
            scope["method"],
            leader_url,
            request_target(scope),
            body=scope.get(BODY_SCOPE_KEY, b""),
            timeout=FORWARD_TIMEOUT,
            headers=headers,
        )

    async def _relay(self, send, reply: Reply) -> None:
        lsn = None
        raw_lsn = reply.headers.get("X-Cluster-LSN")
        if raw_lsn and raw_lsn.isdigit() and reply.status < 400:
            lsn = int(raw_lsn)
            # Read-your-writes: answer once this node holds the write the client just made.
            await self.coordinator.wait_applied(lsn, APPLY_WAIT)
        headers = [
            (k.lower().encode("latin-1"), v.encode("latin-1"))
            for k, v in reply.headers.items()
            if k.lower().encode("latin-1") not in _HOP_BY_HOP
        ]
        leader_id = reply.headers.get("X-Node-Id", "")
        headers += [
            (b"content-length", str(len(reply.body)).encode()),
            (b"x-leader-id", leader_id.encode("latin-1")),
            *self._node_headers(lsn),
        ]
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        await send({"type": "http.response.body", "body": reply.body})

    async def _write_here(self, scope, receive, send, forwarded_by: str | None) -> None:
        key = _header(scope, b"idempotency-key")
        if key is None:
            await self._run_write(scope, receive, send, None)
            return
        if not 1 <= len(key) <= idempotency.MAX_KEY_LENGTH:
            await self._send_error(
                send, 400, "invalid_input", f"Idempotency-Key must be 1-{idempotency.MAX_KEY_LENGTH} characters"
            )
            return
        scoped = idempotency.scoped_key(key, scope["method"], scope["path"], _header(scope, b"authorization") or "")
        kept = idempotency.find(self.db, scoped)
        if kept is not None:
            await self._replay(send, kept)
            return
        await self._run_write(scope, receive, send, scoped)

    async def _run_write(self, scope, receive, send, scoped: str | None) -> None:
        """Run the write here (this node leads); with an Idempotency-Key, the write and its answer are
        one transaction. In quorum mode the answer waits until a majority holds the write."""
        c = self.coordinator
        receipt = WriteReceipt()
        term = c.current_term()
        start: dict[str, Any] | None = None
        chunks: list[bytes] = []

        async def capture(message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        token = current_receipt.set(receipt)
        try:
            with contextlib.ExitStack() as stack:
                request = stack.enter_context(self.db.request_transaction()) if scoped is not None else None
                await self.app(scope, receive, capture)
                if request is not None and start is not None:
                    body = b"".join(chunks)
                    kept = {k.decode("latin-1"): v.decode("latin-1") for k, v in start.get("headers", []) if k == b"content-type"}
                    if start["status"] < 500:
                        request.commit(idempotency.keep(scoped, start["status"], kept, body, c.wall()))
                    if request.suspended:
                        log.error("forward: %s %s awaited with its write transaction open", scope["method"], scope["path"])
        finally:
            current_receipt.reset(token)
        if start is None:
            return
        body = b"".join(chunks)
        if receipt.lsn and not await c.wait_committed(receipt.lsn, term, QUORUM_WAIT):
            await self._error(
                send,
                ClusterError(
                    f"the write (LSN {receipt.lsn}) was not acknowledged by a majority in time; retry with the same "
                    "Idempotency-Key to learn its outcome",
                    code="not_acknowledged",
                ),
            )
            return
        headers = [(k, v) for k, v in start.get("headers", []) if k not in (b"content-length",)]
        headers += [(b"content-length", str(len(body)).encode()), *self._node_headers(receipt.lsn or None)]
        await send({"type": "http.response.start", "status": start["status"], "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _replay(self, send, kept: idempotency.Answer) -> None:
        if kept.status is None:
            # Written by an older release, which kept the answer in a second write that did not happen.
            body = error_body(
                "idempotency_key_used",
                f"a request with this Idempotency-Key was already applied (LSN {kept.lsn}); its answer was not kept",
            )
            status, headers = 409, [(b"content-type", b"application/json")]
        else:
            body, status = kept.body, kept.status
            headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in kept.headers.items()]
        headers += [
            (b"content-length", str(len(body)).encode()),
            (b"idempotent-replayed", b"true"),
            *self._node_headers(kept.lsn),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _error_code(reply: Reply) -> str | None:
    try:
        return reply.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None
