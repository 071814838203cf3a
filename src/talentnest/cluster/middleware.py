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

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Callable
from typing import Any, Protocol

from talentnest.cluster import auth, idempotency
from talentnest.cluster.api import request_target
from talentnest.cluster.forward import (
    CARRIES,
    CARRY_REQUEST,
    ENTRY_HEADER,
    Forwarder,
    ForwardStats,
    Responder,
    header,
    wrap_carried,
)
from talentnest.cluster.runtime import Transport
from talentnest.errors import ClusterError, NoLeader, NotReady, StorageFailure
from talentnest.http_errors import error_body
from talentnest.limits import BODY_SCOPE_KEY
from talentnest.store import Database, WriteReceipt, current_receipt

log = logging.getLogger("talentnest.forward")

# The answers whose body may carry a forwarded write's entries: the successes that have a body.
CARRYING_STATUSES = frozenset(range(200, 300)) - {204, 205}

FORWARDED_BY = "x-talentnest-forwarded-by"
FORWARDED_FOR = "x-forwarded-for"
FORWARDED_SCOPE_KEY = "talentnest.forwarded_by"
MAX_LSN = 2**63 - 1
_READ_HEADERS = frozenset({b"x-cluster-signature", b"x-min-lsn", FORWARDED_BY.encode(), FORWARDED_FOR.encode()})
# Served even by a node that refuses everything else (its own state, for operators).
OPERATIONS_PATHS = ("/cluster/", "/healthz", "/readyz", "/metrics")
MIN_LSN_WAIT = 2.0  # seconds a read with X-Min-LSN may wait
QUORUM_WAIT = 5.0  # seconds a write waits for a majority in quorum mode


class Coordinator(Protocol):
    """What the middleware needs of the cluster.

    ``accepting_writes`` is True only on a leader with a valid lease; ``wait_for_leader`` returns
    a leader's URL or None after the timeout; ``wait_applied`` returns False if this node did not
    reach the LSN in time; ``wait_committed`` returns False if a majority did not hold the LSN
    in time (always True in async mode). ``refusal`` says why this node serves nothing (another
    node has its ID), ``unhealthy`` why it may not take writes for the leader (it cannot apply
    them); both None when all is well. ``watch_leader`` cancels ``call`` if the leader at ``url``
    becomes suspected before it ends (and says so), so that a forward does not outwait it.
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

    def awaited_by(self, lsn: int, node_id: int | None) -> None: ...

    def carried(self, held: int, lsn: int) -> bytes | None: ...

    async def apply_carried(self, body: bytes) -> None: ...

    def no_leader_error(self) -> NoLeader: ...

    def current_term(self) -> int: ...

    def refusal(self) -> str | None: ...

    def unhealthy(self) -> str | None: ...

    def leader_expected(self) -> bool: ...

    def watch_leader(self, url: str, call: asyncio.Future) -> Callable[[], bool]: ...


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
        self.respond = Responder(coordinator, db)
        self.forwarder = Forwarder(coordinator, db, self.respond, stats or ForwardStats())

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # One pass over the headers for the four this layer reads (most requests carry none of them).
        signature = wanted = None
        forwarding = False
        for name, value in scope["headers"]:
            if name in _READ_HEADERS:
                if name == b"x-cluster-signature":
                    signature = value.decode("latin-1") if signature is None else signature
                elif name == b"x-min-lsn":
                    wanted = value.decode("latin-1") if wanted is None else wanted
                else:
                    forwarding = True
        if signature is not None:
            try:
                verified = self.signatures.check(
                    scope, signature, scope["method"], request_target(scope), scope.get(BODY_SCOPE_KEY, b"")
                )
            except auth.SignatureError as exc:
                await refuse_signature(self.respond, send, scope, exc, self.coordinator.wall)
                return
            send = signing(send, self.signatures, verified)
        if forwarding:
            self._take_forwarding_headers(scope)
        refusal = self.coordinator.refusal()
        if refusal is not None and not scope["path"].startswith(OPERATIONS_PATHS):
            await self.respond.send_error(send, 503, "identity_clash", refusal, retry=True)
            return
        if scope["path"].startswith("/cluster/") or not self.is_write(scope):
            await self._read(scope, receive, send, wanted)
            return
        await self._write(scope, receive, send)

    def _take_forwarding_headers(self, scope) -> None:
        """A signed request from a peer names its client (X-Forwarded-For), which becomes
        ``scope["client"]`` for what comes after (throttling); anyone else's forwarding headers
        are dropped, so a client can neither pretend to be a node nor choose its own address."""
        names = (FORWARDED_BY.encode(), FORWARDED_FOR.encode())
        headers = scope["headers"]
        if auth.RequestAuth.verified(scope) is None:
            scope["headers"] = [(name, value) for name, value in headers if name not in names]
            return
        scope[FORWARDED_SCOPE_KEY] = header(scope, names[0])
        client = header(scope, names[1])
        if client:
            # The peer wrote the address it saw; the last one is the only one it vouches for.
            scope["client"] = (client.split(",")[-1].strip(), 0)

    # --- reads -----------------------------------------------------------------------------

    async def _read(self, scope, receive, send, wanted: str | None) -> None:
        """A read (or a /cluster/* call): after the node reached ``wanted`` (X-Min-LSN), if given."""
        if wanted is not None:
            try:
                lsn = int(wanted)
                if not 0 <= lsn <= MAX_LSN:
                    raise ValueError
            except ValueError:
                await self.respond.send_error(send, 400, "invalid_input", "X-Min-LSN must be a whole number")
                return
            if not await self.coordinator.wait_applied(lsn, MIN_LSN_WAIT):
                await self.respond.error(
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
                message = {**message, "headers": [*message.get("headers", []), *self.respond.node_headers()]}
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
            await self.respond.error(send, ClusterError(f"node {c.node_id} is no longer the leader", code="not_leader"))
            return
        problem = c.unhealthy()
        if problem is not None:
            # Forwarding would acknowledge a write this node could not then hold (read-your-writes).
            await self.respond.error(send, NotReady(f"node {c.node_id} takes no writes now: {problem}", code="node_unhealthy"))
            return
        await self.forwarder.write_at_leader(scope, send, lambda: self._write_here(scope, receive, send, None))

    async def _write_here(self, scope, receive, send, forwarded_by: str | None) -> None:
        key = header(scope, b"idempotency-key")
        if key is None:
            await self._run_write(scope, receive, send, None)
            return
        if not 1 <= len(key) <= idempotency.MAX_KEY_LENGTH:
            await self.respond.send_error(
                send, 400, "invalid_input", f"Idempotency-Key must be 1-{idempotency.MAX_KEY_LENGTH} characters"
            )
            return
        use = idempotency.Use.of(
            key,
            scope["method"],
            scope["path"],
            request_target(scope),
            scope.get(BODY_SCOPE_KEY, b""),
            header(scope, b"authorization") or "",
        )
        if not await self._answer_kept(send, use):
            await self._run_write(scope, receive, send, use)

    async def _answer_kept(self, send, use: idempotency.Use) -> bool:
        """Answer a request whose key was used already (the first answer, or 422 for another request)."""
        reused = idempotency.reuse(self.db, use)
        if reused is not None:
            await self.respond.send_error(send, 422, "idempotency_key_reused", reused)
            return True
        kept = idempotency.find(self.db, use.scoped)
        if kept is not None:
            await self._replay(send, kept)
            return True
        return False

    async def _run_write(self, scope, receive, send, use: idempotency.Use | None) -> None:
        """Run the write here (this node leads); with an Idempotency-Key, the write and its answer are
        one transaction. In quorum mode the answer waits until a majority holds the write."""
        c = self.coordinator
        receipt = WriteReceipt()
        term = c.current_term()
        start: dict[str, Any] | None = None
        chunks: list[bytes] = []
        failure: StorageFailure | None = None
        raced = False

        async def capture(message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        token = current_receipt.set(receipt)
        try:
            with contextlib.ExitStack() as stack:
                request = stack.enter_context(self.db.request_transaction()) if use is not None else None
                await self.app(scope, receive, capture)
                # Another request with this key may have been answered while this one ran (both passed the
                # check before either wrote): then this one is a retry of it, and what it wrote is rolled back.
                raced = use is not None and idempotency.taken(self.db, use)
                if not raced and request is not None and start is not None:
                    body = b"".join(chunks)
                    kept = {k.decode("latin-1"): v.decode("latin-1") for k, v in start.get("headers", []) if k == b"content-type"}
                    if start["status"] < 500:
                        try:
                            request.commit(idempotency.keep(use, start["status"], kept, body, c.wall()))
                        except StorageFailure as exc:  # rolled back: nothing was written, a retry is safe
                            failure = exc
                    if request.suspended:
                        log.error("forward: %s %s awaited with its write transaction open", scope["method"], scope["path"])
        finally:
            current_receipt.reset(token)
        if raced:
            await self._answer_kept(send, use)
            return
        if failure is not None:
            # As the app answers one met inside a route (docs/cluster.md, "When a node cannot do its part").
            log.warning("%s %s failed: %s", scope["method"], scope["path"], failure)
            await self.respond.error(send, failure)
            return
        if start is None:
            return
        body = b"".join(chunks)
        forwarded_by = scope.get(FORWARDED_SCOPE_KEY)
        carried = None
        if receipt.lsn and forwarded_by is not None:
            # The follower that forwarded answers its client once it holds the write: give it the entry in
            # this answer if it asks (it applies it at once), else hurry its stream. Only an answer that may
            # have a body can carry one (not a 204 such as a deletion's: HTTP gives it none).
            held = header(scope, CARRY_REQUEST.lower().encode())
            if held is not None and held.isdigit() and len(held) <= 19 and start["status"] in CARRYING_STATUSES:
                carried = c.carried(int(held), receipt.lsn)
            if carried is None:
                c.awaited_by(receipt.lsn, int(forwarded_by) if forwarded_by.isdecimal() else None)
        if receipt.lsn and not await c.wait_committed(receipt.lsn, term, QUORUM_WAIT):
            await self.respond.error(
                send,
                ClusterError(
                    f"the write (LSN {receipt.lsn}) was not acknowledged by a majority in time; retry with the same "
                    "Idempotency-Key to learn its outcome",
                    code="not_acknowledged",
                ),
            )
            return
        if carried is not None:
            body = wrap_carried(carried, body)
        headers = [(k, v) for k, v in start.get("headers", []) if k not in (b"content-length",)]
        headers += [(b"content-length", str(len(body)).encode()), *self.respond.node_headers(receipt.lsn or None)]
        if receipt.lsn:
            # Which entry is at that LSN: a follower relaying this answer checks that it holds this very entry.
            headers.append((ENTRY_HEADER, f"{receipt.term}.{receipt.epoch}".encode()))
        if carried is not None:
            headers.append((CARRIES, b"1"))
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
            *self.respond.node_headers(kept.lsn),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


async def refuse_signature(respond: Responder, send, scope, exc: auth.SignatureError, wall: Callable[[], float]) -> None:
    """The 401 for a request whose signature is bad, logged as a security event."""
    client = scope.get("client")
    log.warning("security: refused %s %s from %s: %s", scope["method"], scope["path"], client[0] if client else "?", exc)
    # Our clock, so that a peer refused for a stale signature can tell its clock is off.
    headers = [(b"www-authenticate", auth.HEADER.encode()), (b"x-node-time", str(int(wall())).encode())]
    await respond.send_error(send, 401, "invalid_signature", str(exc), headers=headers)


def signing(send, signatures: auth.RequestAuth, verified: auth.Verified):
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
        signature = signatures.sign_answer(verified, start["status"], digest.hexdigest())
        if signature is not None:
            headers.append((b"x-cluster-signature", signature.encode()))
        await send({**start, "headers": headers})
        while parts:
            part = parts.pop(0)
            await send({"type": "http.response.body", "body": part, "more_body": bool(parts)})

    return signed_send
