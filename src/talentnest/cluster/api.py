"""The cluster's own endpoints (/cluster/*): status is public, every other one is signed."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from talentnest.cluster import auth
from talentnest.cluster.replication import human_bytes
from talentnest.errors import InvalidInput, LogTruncated, TalentNestError
from talentnest.http_errors import error_response, respond_to
from talentnest.store import iso_from_epoch, snapshot

if TYPE_CHECKING:
    from talentnest.cluster.node import ClusterNode

log = logging.getLogger("talentnest.cluster")
Handler = Callable[[Request], Awaitable[Response]]


def request_target(scope: dict) -> str:
    """The path and query string exactly as the client sent them (what signatures cover)."""
    path = scope.get("raw_path") or scope["path"].encode()
    query = scope.get("query_string") or b""
    return (path + (b"?" + query if query else b"")).decode("latin-1")


def _json(payload: Any, status: int = 200) -> Response:
    return Response(json.dumps(payload, separators=(",", ":")), status_code=status, media_type="application/json")


def build_routes(node: ClusterNode) -> list[Route]:
    """The /cluster/* routes of one node."""
    replication = node.replication

    def signed(handler: Handler) -> Handler:
        async def checked(request: Request) -> Response:
            body = await request.body()
            try:
                auth.verify(
                    node.key,
                    request.headers.get(auth.HEADER),
                    request.method,
                    request_target(request.scope),
                    body,
                    now=node.wall(),
                )
            except auth.SignatureError as exc:
                client = request.client.host if request.client else "?"
                log.warning("security: refused %s %s from %s: %s", request.method, request.url.path, client, exc)
                return error_response(401, "invalid_signature", str(exc), headers={"WWW-Authenticate": auth.HEADER})
            try:
                return await handler(request)
            except TalentNestError as exc:
                return respond_to(exc)
            except (ValueError, KeyError, TypeError) as exc:
                return error_response(400, "bad_request", f"malformed cluster request: {exc}")

        return checked

    async def read_json(request: Request) -> dict[str, Any]:
        try:
            payload = json.loads(await request.body())
        except ValueError:
            raise InvalidInput("body is not valid JSON") from None
        except RecursionError:
            # Node-to-node bodies skip the client depth check (they are large and signed); a
            # signed one nested absurdly deep is still only a bad request.
            raise InvalidInput("body nests too deeply") from None
        if not isinstance(payload, dict):
            raise InvalidInput("body must be a JSON object")
        return payload

    async def status(request: Request) -> Response:
        payload = node.status()
        payload["events"] = list(node.events)[-20:]
        return _json(payload)

    async def heartbeat(request: Request) -> Response:
        node.observe(await read_json(request), inbound=True)
        return _json(node.self_info())

    async def vote(request: Request) -> Response:
        return _json(await node.on_vote(await read_json(request)))

    async def handover(request: Request) -> Response:
        return _json(node.on_handover(await read_json(request)))

    async def leave(request: Request) -> Response:
        node.on_leave(await read_json(request))
        return _json({"ok": True})

    async def replicate(request: Request) -> Response:
        return _json(await replication.on_replicate(await read_json(request)))

    async def log_entries(request: Request) -> Response:
        try:
            after = int(request.query_params.get("after", "0"))
            limit = min(10_000, max(1, int(request.query_params.get("limit", "1000"))))
        except ValueError:
            raise InvalidInput("after and limit must be whole numbers") from None
        if after < 0:
            raise InvalidInput("after must be 0 or more")
        try:
            return Response(replication.log_page(after, limit), media_type="application/json")
        except LogTruncated as exc:
            return respond_to(exc)

    async def checksum(request: Request) -> Response:
        return _json({"checksum": node.db.checksum(), "applied_lsn": node.db.last_lsn, "node_id": node.node_id})

    async def sync(request: Request) -> Response:
        binary = request.query_params.get("format") == "binary"
        directory = node.settings.data_dir / "snapshots"
        directory.mkdir(exist_ok=True)
        descriptor, name = tempfile.mkstemp(dir=directory, suffix=".snapshot")
        os.close(descriptor)
        path = Path(name)
        started = node.clock()
        try:
            info = await asyncio.to_thread(snapshot.take_snapshot, node.db.path, path)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        replication.stats.snapshots_served += 1
        replication.stats.snapshot_bytes, replication.stats.snapshot_raw_bytes = info.compressed_bytes, info.raw_bytes
        log.info(
            "sync: serving a snapshot at LSN %d (%s compressed, %s database, made in %.2f s)",
            info.lsn,
            human_bytes(info.compressed_bytes),
            human_bytes(info.raw_bytes),
            node.clock() - started,
        )
        headers = {
            "X-Snapshot-Lsn": str(info.lsn),
            "X-Snapshot-Term": str(info.term),
            "X-Snapshot-Compression": info.compression,
            "X-Snapshot-Sha256": info.sha256,
            "X-Snapshot-Raw-Bytes": str(info.raw_bytes),
        }
        if binary:
            return StreamingResponse(_file_chunks(path), media_type="application/octet-stream", headers=headers)
        try:
            data = await asyncio.to_thread(path.read_bytes)
        finally:
            path.unlink(missing_ok=True)
        payload = {
            "database": base64.b64encode(data).decode(),
            "leader_id": node.leader_id,
            "node_id": node.node_id,
            "timestamp": iso_from_epoch(node.wall()),
            "lsn": info.lsn,
            "term": info.term,
            "compression": info.compression,
            "sha256": info.sha256,
        }
        return _json(payload)

    return [
        Route("/cluster/status", status, methods=["GET"]),
        Route("/cluster/heartbeat", signed(heartbeat), methods=["POST"]),
        Route("/cluster/vote", signed(vote), methods=["POST"]),
        Route("/cluster/handover", signed(handover), methods=["POST"]),
        Route("/cluster/leave", signed(leave), methods=["POST"]),
        Route("/cluster/replicate", signed(replicate), methods=["POST"]),
        Route("/cluster/log", signed(log_entries), methods=["GET"]),
        Route("/cluster/sync", signed(sync), methods=["GET"]),
        Route("/cluster/checksum", signed(checksum), methods=["GET"]),
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
