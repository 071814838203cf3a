"""The cluster's own endpoints (/cluster/*): status is public, every other one is signed.

Each handler parses its request into a ``wire`` value (a 400 for anything malformed or out of bounds,
before the node sees it) and answers the node's reply in its wire form.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from talentnest.cluster import auth, follower, handover, snapshot_stream, votes, wire
from talentnest.errors import InvalidInput, LogTruncated, TalentNestError
from talentnest.http_errors import error_response, respond_to
from talentnest.store import iso_from_epoch, pages, snapshot
from talentnest.units import human_bytes

if TYPE_CHECKING:
    from talentnest.cluster.node import ClusterNode
    from talentnest.cluster.replication import Replication

log = logging.getLogger("talentnest.cluster")
Handler = Callable[[Request], Awaitable[Response]]
LOG_PAGE_MAX = 10_000


def request_target(scope: dict) -> str:
    """The path and query string exactly as the client sent them (what signatures cover)."""
    path = scope.get("raw_path") or scope["path"].encode()
    query = scope.get("query_string") or b""
    return (path + (b"?" + query if query else b"")).decode("latin-1")


def _json(payload: Any, status: int = 200) -> Response:
    return Response(json.dumps(payload, separators=(",", ":")), status_code=status, media_type="application/json")


def _wire(body: bytes) -> Response:
    return Response(body, media_type="application/json")


def build_routes(node: ClusterNode, replication: Replication, signatures: auth.RequestAuth) -> list[Route]:
    """The /cluster/* routes of one node; ``signatures`` checks their signatures (the cluster middleware
    has already checked any request that carries one, and signs every answer to it)."""

    def signed(handler: Handler) -> Handler:
        async def checked(request: Request) -> Response:
            body = await request.body()
            try:
                signatures.check(
                    request.scope, request.headers.get(auth.HEADER), request.method, request_target(request.scope), body
                )
            except auth.SignatureError as exc:
                client = request.client.host if request.client else "?"
                log.warning("security: refused %s %s from %s: %s", request.method, request.url.path, client, exc)
                # Our clock, so that a peer refused for a stale signature can tell its clock is off.
                headers = {"WWW-Authenticate": auth.HEADER, "X-Node-Time": str(int(node.clock.wall()))}
                return error_response(401, "invalid_signature", str(exc), headers=headers)
            refusal = node.health.refusal()
            if refusal is not None:
                return error_response(503, "identity_clash", refusal, headers={"Retry-After": "30"})
            try:
                return await handler(request)
            except InvalidInput as exc:
                # A peer's malformed or out-of-range message: a bad request, and nothing of it used.
                return error_response(400, "bad_request", exc.message)
            except TalentNestError as exc:
                return respond_to(exc)

        return checked

    async def body_of(request: Request) -> dict[str, Any]:
        return wire.decode(await request.body())

    async def status(request: Request) -> Response:
        payload = node.status()
        payload["events"] = list(node.events)[-20:]
        return _json(payload)

    async def heartbeat(request: Request) -> Response:
        node.membership.heard(None, wire.in_reach(node, wire.NodeInfo.parse(await body_of(request))))
        return _wire(node.self_info().to_bytes())

    async def vote(request: Request) -> Response:
        reply = await votes.answer_vote(node, wire.in_reach(node, wire.VoteRequest.parse(await body_of(request))))
        return _wire(reply.to_bytes())

    async def handover_request(request: Request) -> Response:
        return _wire(handover.on_handover(node, wire.HandoverRequest.parse(await body_of(request))).to_bytes())

    async def leave(request: Request) -> Response:
        node.membership.heard(None, wire.NodeInfo.parse({**(await body_of(request)), "leaving": True}))
        return _json({"ok": True})

    async def replicate(request: Request) -> Response:
        reply = await replication.on_replicate_body(await request.body())
        return _wire(reply.to_bytes())

    async def log_entries(request: Request) -> Response:
        after = wire.query_integer(request.query_params, "after", 0)
        limit = wire.query_integer(request.query_params, "limit", 1000, low=1, high=LOG_PAGE_MAX)
        try:
            return _wire(follower.log_page(node.db, after, limit))
        except LogTruncated as exc:
            return respond_to(exc)

    async def drain(request: Request) -> Response:
        drained = wire.flag(await body_of(request), "drained")
        changed = node.care.drain(drained)
        return _json({"node_id": node.node_id, "drained": drained, "changed": changed, "role": node.role.value})

    async def checksum(request: Request) -> Response:
        return _json({"checksum": node.db.checksum(), "applied_lsn": node.db.last_lsn, "node_id": node.node_id})

    images = snapshot_stream.Images(node.clock.monotonic, node.clock.sleep)
    # A kept image pins the file: a node about to install a snapshot itself (a deposed leader that served
    # others) lets go of them first, or its swap finds the file held (simulator seed 1430).
    node.db.add_release_listener(images.close)

    async def sweep_later(seconds: float) -> None:
        # A kept image pins the database (its WAL cannot restart): release it once nobody resumed it,
        # and at once when the node stops (which cancels this).
        try:
            await node.clock.sleep(seconds + 0.1)
        except asyncio.CancelledError:
            images.close()
            raise
        images.sweep()

    async def backup(request: Request) -> Response:
        """An operator's backup (``talentnest backup``): this node's database as one consistent compressed
        snapshot (store/snapshot.py's format), streamed with its position in the headers."""
        ready, reason = node.readiness()
        if not ready:  # its data may be behind or set aside: a backup of it would mislead
            return error_response(503, "not_ready", f"node {node.node_id} is not ready ({reason}); back up another node")
        started = node.clock.monotonic()
        path, info = await asyncio.to_thread(snapshot.take_to_serve, node.db.path)
        log.info(
            "backup: serving a snapshot at LSN %d term %d (%s compressed, %s database, made in %.2f s)",
            *(info.lsn, info.term, human_bytes(info.compressed_bytes), human_bytes(info.raw_bytes)),
            node.clock.monotonic() - started,
        )
        headers = {
            "Content-Length": str(info.compressed_bytes),
            "X-Snapshot-Lsn": str(info.lsn),
            "X-Snapshot-Term": str(info.term),
            "X-Snapshot-Schema-Version": str(info.schema_version),
            "X-Snapshot-Compression": info.compression,
            "X-Snapshot-Sha256": info.sha256,
            "X-Snapshot-Raw-Bytes": str(info.raw_bytes),
            "X-Snapshot-Time": iso_from_epoch(node.clock.wall()),
        }
        # Signed for the request's nonce over the file's SHA-256, known before the first byte: otherwise the
        # cluster middleware would hold the whole backup in memory to sign it.
        verified = auth.RequestAuth.verified(request.scope)
        signature = signatures.sign_answer(verified, 200, info.sha256) if verified is not None else None
        if signature is not None:
            headers[auth.HEADER] = signature
        return StreamingResponse(_file_chunks(path), media_type="application/octet-stream", headers=headers)

    async def sync(request: Request) -> Response:
        form = request.query_params.get("format", "json")
        if form == "stream":
            return await sync_stream(request)
        binary = form == "binary"
        started = node.clock.monotonic()
        path, info = await asyncio.to_thread(snapshot.take_to_serve, node.db.path)
        replication.stats.snapshots_served += 1
        replication.stats.snapshot_bytes, replication.stats.snapshot_raw_bytes = info.compressed_bytes, info.raw_bytes
        log.info(
            "sync: serving a snapshot at LSN %d (%s compressed, %s database, made in %.2f s)",
            *(info.lsn, human_bytes(info.compressed_bytes), human_bytes(info.raw_bytes), node.clock.monotonic() - started),
        )
        headers = {
            "X-Snapshot-Lsn": str(info.lsn),
            "X-Snapshot-Term": str(info.term),
            "X-Snapshot-Compression": info.compression,
            "X-Snapshot-Sha256": info.sha256,
            "X-Snapshot-Raw-Bytes": str(info.raw_bytes),
        }
        if binary:
            # The body is the file whose SHA-256 is known: its answer signature goes out before it.
            verified = auth.RequestAuth.verified(request.scope)
            signature = signatures.sign_answer(verified, 200, info.sha256) if verified is not None else None
            if signature is not None:
                headers[auth.HEADER] = signature
            return StreamingResponse(_file_chunks(path), media_type="application/octet-stream", headers=headers)
        try:
            data = await asyncio.to_thread(path.read_bytes)
        finally:
            path.unlink(missing_ok=True)
        payload = {
            "database": base64.b64encode(data).decode(),
            "leader_id": node.leader_id,
            "node_id": node.node_id,
            "timestamp": iso_from_epoch(node.clock.wall()),
            "lsn": info.lsn,
            "term": info.term,
            "compression": info.compression,
            "sha256": info.sha256,
        }
        return _json(payload)

    async def sync_stream(request: Request) -> Response:
        """The streamed form (snapshot_stream): a page image sent as it is read, signed record by record."""
        verified = auth.RequestAuth.verified(request.scope)
        if verified is None or verified.nonce is None:
            return error_response(400, "invalid_input", "the streamed snapshot needs a request signed with a nonce")
        resume = request.query_params.get("snapshot")
        first_chunk = wire.query_integer(request.query_params, "from", 0)
        compression = request.query_params.get("compression", "none")
        if compression not in snapshot_stream.COMPRESSIONS:
            return error_response(422, "invalid_input", f"compression must be one of {', '.join(snapshot_stream.COMPRESSIONS)}")
        if resume is not None:
            image = await images.take(resume)
            if image is None:
                return error_response(410, "snapshot_gone", f"snapshot {resume[:64]} is no longer kept here; start again")
            snapshot_id = resume
        else:
            image = await asyncio.to_thread(pages.PageImage.open, node.db.path)
            snapshot_id = f"{node.runtime.random.getrandbits(64):016x}"
            first_chunk = 0
        info = image.info
        header = snapshot_stream.StreamHeader(
            snapshot=snapshot_id, lsn=info.lsn, term=info.term, schema_version=info.schema_version,
            page_size=info.page_size, page_count=info.page_count,
            chunk_pages=max(1, snapshot_stream.CHUNK_BYTES // info.page_size), first_chunk=first_chunk, leader_id=node.leader_id,
            compression=compression,
        )  # fmt: skip
        images.begin(snapshot_id, image)
        if first_chunk > header.chunks:
            images.end(snapshot_id, complete=False)
            return error_response(422, "invalid_input", f"from must be 0-{header.chunks}, got {first_chunk}")
        replication.stats.snapshots_served += 1
        replication.stats.snapshot_raw_bytes = info.raw_bytes
        log.info(
            "sync: streaming snapshot %s at LSN %d (%s database, compression %s) from chunk %d of %d",
            *(snapshot_id, info.lsn, human_bytes(info.raw_bytes), compression, first_chunk, header.chunks),
        )

        def sign(body_sha256: str) -> str:
            return auth.sign_answer(verified.key, verified.nonce, 200, body_sha256, now=node.clock.wall())

        sent = [0]

        def count(raw: int, compressed: int) -> None:
            sent[0] += compressed

        async def body():
            done = False
            try:
                async for part in snapshot_stream.stream_image(
                    image, header, sign, on_chunk=count, threaded=node.runtime.threads
                ):
                    yield part
                done = True
                replication.stats.snapshot_bytes = sent[0]
            finally:
                images.end(snapshot_id, complete=done)
                kept = snapshot_stream.SENT_RESUME_SECONDS if done else snapshot_stream.RESUME_SECONDS
                node.spawn(sweep_later(kept), "snapshot-sweep")
                log.info("sync: snapshot %s %s; kept %g s for a resume", snapshot_id, "sent" if done else "broke off", kept)

        answer = {
            auth.HEADER: auth.sign_answer(verified.key, verified.nonce, 200, auth.STREAMED, now=node.clock.wall()),
            "X-Snapshot-Lsn": str(info.lsn),
            "X-Snapshot-Raw-Bytes": str(info.raw_bytes),
        }
        return StreamingResponse(body(), media_type=snapshot_stream.MEDIA_TYPE, headers=answer)

    return [
        Route("/cluster/status", status, methods=["GET"]),
        Route("/cluster/heartbeat", signed(heartbeat), methods=["POST"]),
        Route("/cluster/vote", signed(vote), methods=["POST"]),
        Route("/cluster/handover", signed(handover_request), methods=["POST"]),
        Route("/cluster/leave", signed(leave), methods=["POST"]),
        Route("/cluster/replicate", signed(replicate), methods=["POST"]),
        Route("/cluster/log", signed(log_entries), methods=["GET"]),
        Route("/cluster/sync", signed(sync), methods=["GET"]),
        Route("/cluster/checksum", signed(checksum), methods=["GET"]),
        Route("/cluster/backup", signed(backup), methods=["GET"]),
        Route("/cluster/drain", signed(drain), methods=["POST"]),
    ]


async def _file_chunks(path: Path, size: int = 1 << 20):
    try:
        with open(path, "rb") as handle:
            while True:
                chunk = await asyncio.to_thread(handle.read, size)
                if not chunk:
                    break
                yield chunk
    finally:
        path.unlink(missing_ok=True)
