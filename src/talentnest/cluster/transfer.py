"""Fetching a peer's snapshot over the wire and handing it to the store to verify and install."""

from __future__ import annotations

import asyncio
import logging

from talentnest.cluster.protocols import Node
from talentnest.cluster.stats import Stats
from talentnest.errors import PeerUnreachable, SnapshotError
from talentnest.store import Database, snapshot
from talentnest.units import human_bytes

log = logging.getLogger("talentnest.replication")

SYNC_PATH = "/cluster/sync?format=binary"
CHUNK = 1 << 20


async def sync_from(node: Node, db: Database, stats: Stats, url: str, source_id: int, why: str) -> bool:
    """Install a snapshot of the node at ``url``; True when installed. Failures (the peer gone, a
    damaged or refused snapshot, a full disk) are logged and leave the database as it was."""
    started = node.clock.monotonic()
    log.info("sync: requesting a snapshot from node %d (%s): %s", source_id, url, why)
    download = snapshot.SnapshotDownload(db.data_dir)
    try:
        async with node.transport.stream(url, SYNC_PATH, connect_timeout=5, read_timeout=30) as response:
            if response.status != 200:
                raise SnapshotError(f"node {source_id} answered HTTP {response.status} to /cluster/sync")
            compression = response.headers.get("X-Snapshot-Compression", "zstd")
            expected = response.headers.get("X-Snapshot-Sha256")
            async for chunk in response.chunks(CHUNK):
                download.write(chunk)
        path, _, size = download.finish()
        prepared = await asyncio.to_thread(
            snapshot.prepare_snapshot,
            db.data_dir,
            path,
            compression=compression,
            expected_sha256=expected,
            max_schema_version=db.schema_version,
        )
        try:
            info = snapshot.install(db, prepared)
        except BaseException:
            prepared.discard()
            raise
    except (PeerUnreachable, SnapshotError, OSError) as exc:
        log.warning("sync: from node %d failed: %s; will retry", source_id, exc)
        return False
    finally:
        download.discard()
    seconds = node.clock.monotonic() - started
    stats.syncs += 1
    stats.sync_bytes += size
    stats.sync_seconds += seconds
    stats.snapshot_bytes, stats.snapshot_raw_bytes = size, info.raw_bytes
    text = (
        f"installed a snapshot from node {source_id} at LSN {info.lsn} (term {info.term}): "
        f"{human_bytes(size)} sent, {human_bytes(info.raw_bytes)} database, in {seconds:.2f} s"
    )
    log.info("sync: %s", text)
    node.record_event("sync", text)
    node.snapshot_installed()
    return True
