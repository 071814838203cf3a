"""The cluster's own endpoints (/cluster/*) served ahead of the product's middleware stack, in one pure-ASGI layer.

Node-to-node calls (replicate, heartbeat, vote...) are the busiest requests a node serves and need none
of the product's layers. Here each is read within the body limit of ``limits.read_body`` (16 MiB, the
client deadline), its signature checked as the cluster middleware would (a bad one is 401 before the
handler runs), the handler called, and the answer sent with the node's headers, signed for the request's
nonce, and counted in the HTTP metrics: what the full stack gives such a call, without its layers.

A request this layer does not know (another method, a path of no route), or one that needs the full
stack (``X-Min-LSN``, forwarding headers, a mounted root path) passes on to the stack unchanged.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from talentnest.cluster import auth
from talentnest.cluster.api import request_target
from talentnest.cluster.forward import Responder
from talentnest.cluster.middleware import FORWARDED_BY, FORWARDED_FOR, refuse_signature, signing
from talentnest.errors import TalentNestError
from talentnest.http_errors import respond_to
from talentnest.limits import BODY_SCOPE_KEY, CLIENT_TIMEOUT, MAX_CLUSTER_BODY_BYTES, read_body, replaying
from talentnest.metrics import StatusSend

Record = Callable[[str, str, int, float], None]  # method, route template, status, seconds
_SIGNATURE = auth.HEADER.lower().encode()
# Headers whose meaning the cluster middleware gives: a request carrying one takes the full stack.
_FULL_STACK_HEADERS = frozenset({b"x-min-lsn", FORWARDED_BY.encode(), FORWARDED_FOR.encode()})


class ClusterFront:
    """Serves ``routes`` (the /cluster/* ones of ``cluster.api.build_routes``) by method and exact path;
    passes every other request to ``app``. ``record`` counts each call it serves (``RequestStats.record``)."""

    def __init__(
        self,
        app,
        *,
        routes: Sequence[Route],
        signatures: auth.RequestAuth,
        respond: Responder,
        wall: Callable[[], float],
        record: Record,
        timeout: float = CLIENT_TIMEOUT,
    ):
        self.app = app
        self.endpoints = {
            (method, route.path): route.endpoint for route in routes for method in route.methods or () if method != "HEAD"
        }
        self.signatures = signatures
        self.respond = respond
        self.wall = wall
        self.record = record
        self.timeout = timeout

    async def __call__(self, scope, receive, send) -> None:
        endpoint = self.endpoints.get((scope.get("method"), scope.get("path"))) if scope["type"] == "http" else None
        if endpoint is None or scope.get("root_path"):
            await self.app(scope, receive, send)
            return
        signature = None
        for name, value in scope["headers"]:
            if name == _SIGNATURE:
                signature = value.decode("latin-1")
            elif name in _FULL_STACK_HEADERS:
                await self.app(scope, receive, send)
                return
        started = time.perf_counter()
        answer = StatusSend(send)
        try:
            await self._serve(endpoint, signature, scope, receive, answer)
        finally:
            self.record(scope["method"], scope["path"], answer.status, time.perf_counter() - started)

    async def _serve(self, endpoint, signature: str | None, scope, receive, send) -> None:
        body = await read_body(scope, receive, send, max_bytes=MAX_CLUSTER_BODY_BYTES, timeout=self.timeout)
        if body is None:
            return
        scope[BODY_SCOPE_KEY] = body
        verified = None
        if signature is not None:
            try:
                verified = self.signatures.check(scope, signature, scope["method"], request_target(scope), body)
            except auth.SignatureError as exc:
                await refuse_signature(self.respond, send, scope, exc, self.wall)
                return
        receive = replaying(body, receive)
        try:
            response = await endpoint(Request(scope, receive))
        except TalentNestError as exc:
            response = respond_to(exc)
        if isinstance(response, StreamingResponse) or response.background is not None:
            signed = send if verified is None else signing(send, self.signatures, verified)
            await response(scope, receive, self._with_node_headers(signed))
            return
        await self._send_whole(response, verified, send)

    async def _send_whole(self, response: Response, verified: auth.Verified | None, send) -> None:
        headers = [*response.raw_headers, *self.respond.node_headers()]
        if verified is not None and not any(name == _SIGNATURE for name, _ in response.raw_headers):
            answer = self.signatures.sign_answer(verified, response.status_code, hashlib.sha256(response.body).hexdigest())
            if answer is not None:
                headers.append((_SIGNATURE, answer.encode()))
        await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
        await send({"type": "http.response.body", "body": response.body})

    def _with_node_headers(self, send):
        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *self.respond.node_headers()]}
            await send(message)

        return send_with_headers
