"""``talentnest backup``: a consistent online backup of any node, streamed to a file with its manifest.

The node takes one consistent snapshot (``GET /cluster/backup``, signed; store/snapshot.py's compressed
format) and streams it; this side writes it chunk by chunk to ``FILE.partial`` while it hashes it, checks
the SHA-256 and the size against the node's headers, verifies that it unpacks to a whole, intact database
(``prepare_snapshot``, beside the file, then discarded), and only then renames it into place next to
``FILE.manifest.json``. Nothing of it is held in memory.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TextIO

import aiohttp

from talentnest import __version__
from talentnest.cluster import auth
from talentnest.launcher.remote import DEFAULT_TIMEOUT, RemoteError, normalise_url, survey

MANIFEST_SUFFIX = ".manifest.json"
MANIFEST_FORMAT = "talentnest-backup/1"
BACKUP_PATH = "/cluster/backup"
CHUNK = 1024 * 1024
# The node makes the whole snapshot before the first byte: allow it time on a large database.
FIRST_BYTE_TIMEOUT = 600.0


@dataclass(frozen=True)
class Manifest:
    """What a backup file holds: the position of its last entry, where and when it was taken, how to check it."""

    file: str
    lsn: int
    term: int
    schema_version: int
    node_id: int | None
    node_url: str
    node_role: str | None
    taken_at: str
    compression: str
    sha256: str
    compressed_bytes: int
    raw_bytes: int
    talentnest_version: str = __version__
    format: str = MANIFEST_FORMAT

    def as_dict(self) -> dict:
        return asdict(self)


def manifest_path(file: Path) -> Path:
    return Path(f"{file}{MANIFEST_SUFFIX}")


def read_manifest(file: Path) -> Manifest | None:
    """The manifest beside ``file``, or None when there is none; RemoteError when it is unreadable."""
    path = manifest_path(file)
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise RemoteError(f"{path} is not a backup manifest: {exc}") from None
    if not isinstance(raw, dict) or raw.get("format") != MANIFEST_FORMAT:
        raise RemoteError(f"{path} is not a {MANIFEST_FORMAT} manifest")
    fields = Manifest.__dataclass_fields__
    return Manifest(**{k: v for k, v in raw.items() if k in fields})


class Progress:
    """Bytes, percent and rate: a live bar on a terminal, a plain line every few seconds otherwise."""

    def __init__(self, stream: TextIO | None = None, *, interval: float = 5.0, clock: Callable[[], float] = time.monotonic):
        self.stream = stream or sys.stderr
        self.interactive = self.stream.isatty()
        self.interval = interval
        self.clock = clock
        self._bar = None
        self._task = None
        self._started = self._last = 0.0
        self._total = 0

    def start(self, total: int, label: str) -> None:
        self._total, self._started = total, self.clock()
        self._last = self._started
        if self.interactive:
            from rich.console import Console
            from rich.progress import BarColumn, DownloadColumn, Progress, TaskProgressColumn, TransferSpeedColumn

            self._bar = Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                TaskProgressColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                console=Console(file=self.stream),
                transient=False,
            )
            self._bar.start()
            self._task = self._bar.add_task(label, total=total)
        else:
            self.line(f"{label}: {_human(total)} to receive")

    def advance(self, done: int) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=done)
            return
        now = self.clock()
        if now - self._last >= self.interval:
            self._last = now
            self.line(self._figures(done, now))

    def finish(self, done: int) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=done)
            self._bar.stop()
            self._bar = None
        else:
            self.line(self._figures(done, self.clock()))

    def _figures(self, done: int, now: float) -> str:
        percent = 100.0 * done / self._total if self._total else 100.0
        rate = done / max(now - self._started, 1e-6)
        return f"received {_human(done)} of {_human(self._total)} ({percent:.0f}%), {_human(rate)}/s"

    def line(self, text: str) -> None:
        print(f"backup: {text}", file=self.stream, flush=True)


def _human(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


async def find_leader(urls: list[str], timeout: float) -> str:
    """The URL of the leader, found through ``/cluster/status`` (its internal address must answer from here)."""
    found = await survey(urls, timeout=timeout)
    leaders = [m for m in found.answered if m.status.get("current_role") == "leader"]
    if len(leaders) == 1 and leaders[0].reached:
        return leaders[0].reached
    named = {m.status.get("leader_id") for m in found.answered} - {None}
    if not found.answered:
        raise RemoteError(f"no node answered at {', '.join(found.urls)}")
    if len(named) == 1:
        (leader_id,) = named
        member = found.members.get(leader_id)
        where = member.address if member is not None else "an unknown address"
        raise RemoteError(
            f"the leader, node-{leader_id} at {where}, does not answer from here: give its URL with --url "
            "(e.g. through a port-forward), or back up a follower without --from-leader"
        )
    raise RemoteError("no leader is agreed on now (see `talentnest cluster status --url`); retry, or leave out --from-leader")


async def take_backup(
    url: str, key: bytes, file: Path, *, progress: Progress, verify: bool = True, timeout: float = DEFAULT_TIMEOUT
) -> Manifest:
    """Stream a backup of the node at ``url`` into ``file`` and write its manifest; raise RemoteError (and
    leave nothing behind but what was there before) on any failure."""
    base = normalise_url(url)
    file = Path(file)
    if file.is_dir():
        raise RemoteError(f"{file} is a directory; give the backup's file name, e.g. {file}/talentnest.backup")
    if not file.parent.is_dir():
        raise RemoteError(f"{file.parent} does not exist; create it first")
    partial = file.with_name(f"{file.name}.partial")
    client_timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeout, sock_read=FIRST_BYTE_TIMEOUT)
    progress.line(f"asking {base} for a consistent snapshot (the node makes it first, then streams it)")
    try:
        async with aiohttp.ClientSession(trust_env=False) as session:
            sent = auth.sign(key, "GET", BACKUP_PATH)
            async with session.get(f"{base}{BACKUP_PATH}", headers={auth.HEADER: sent}, timeout=client_timeout) as response:
                if response.status == 401:
                    raise RemoteError(f"{base} refused the signature (401): CLUSTER_SECRET or JWT_SECRET is not the cluster's")
                if response.status == 404:
                    raise RemoteError(f"{base} has no {BACKUP_PATH}: it runs a Talent Nest older than this command; upgrade it")
                if response.status != 200:
                    text = (await response.content.read(2000)).decode(errors="replace")
                    raise RemoteError(f"{base} answered {response.status} to the backup: {text}")
                meta = _snapshot_headers(response.headers, base)
                answer_signature = response.headers.get(auth.HEADER)
                digest, size = await _receive(response, partial, meta["compressed_bytes"], progress)
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        partial.unlink(missing_ok=True)
        raise RemoteError(f"the backup from {base} failed: {exc or type(exc).__name__}") from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    try:
        if size != meta["compressed_bytes"] or digest != meta["sha256"]:
            raise RemoteError(
                f"the backup arrived damaged: {size} bytes with SHA-256 {digest}, the node sent "
                f"{meta['compressed_bytes']} bytes with {meta['sha256']}"
            )
        try:
            # What arrived, bound to this request by the cluster key: not only the node's word in a header.
            auth.verify_answer(key, answer_signature, auth.nonce_of(sent), 200, digest)
        except auth.SignatureError as exc:
            raise RemoteError(f"the backup from {base} is refused: {exc}") from None
        if verify:
            progress.line("verifying that it unpacks to an intact database (integrity_check) ...")
            _verify(partial, meta)
        manifest = Manifest(file=file.name, node_url=base, **meta)
        os.replace(partial, file)
        _write_json(manifest_path(file), manifest.as_dict())
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return manifest


def _snapshot_headers(headers, base: str) -> dict:
    try:
        return {
            "lsn": int(headers["X-Snapshot-Lsn"]),
            "term": int(headers["X-Snapshot-Term"]),
            "schema_version": int(headers["X-Snapshot-Schema-Version"]),
            "compression": headers["X-Snapshot-Compression"],
            "sha256": headers["X-Snapshot-Sha256"].lower(),
            "compressed_bytes": int(headers["Content-Length"]),
            "raw_bytes": int(headers["X-Snapshot-Raw-Bytes"]),
            "taken_at": headers["X-Snapshot-Time"],
            "node_id": int(headers["X-Node-Id"]) if headers.get("X-Node-Id", "").isdigit() else None,
            "node_role": headers.get("X-Node-Role"),
        }
    except (KeyError, ValueError) as exc:
        raise RemoteError(f"{base} answered the backup without its snapshot headers ({exc}); is it a Talent Nest node?") from None


async def _receive(response: aiohttp.ClientResponse, partial: Path, total: int, progress: Progress) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    progress.start(total, f"backup of LSN {response.headers.get('X-Snapshot-Lsn')}")
    try:
        with partial.open("wb") as out:
            async for chunk in response.content.iter_chunked(CHUNK):
                out.write(chunk)
                digest.update(chunk)
                size += len(chunk)
                progress.advance(size)
            out.flush()
            os.fsync(out.fileno())
    finally:
        progress.finish(size)
    return digest.hexdigest(), size


def _verify(path: Path, meta: dict) -> None:
    from talentnest.errors import SnapshotError
    from talentnest.store import snapshot
    from talentnest.store.schema import MIGRATIONS

    newest = max(version for version, _ in MIGRATIONS)
    with tempfile.TemporaryDirectory(prefix=".verify-", dir=path.parent) as scratch:
        try:
            prepared = snapshot.prepare_snapshot(
                Path(scratch), path, compression=meta["compression"], expected_sha256=meta["sha256"], max_schema_version=newest
            )
        except SnapshotError as exc:
            raise RemoteError(f"the backup does not verify: {exc}") from None
        prepared.discard()
        if (prepared.info.lsn, prepared.info.term) != (meta["lsn"], meta["term"]):
            raise RemoteError(
                f"the backup holds LSN {prepared.info.lsn} term {prepared.info.term}, the node said "
                f"LSN {meta['lsn']} term {meta['term']}"
            )


def _write_json(path: Path, payload: dict) -> None:
    tmp = path.with_name(f"{path.name}.tmp")
    with tmp.open("w") as out:
        json.dump(payload, out, indent=2)
        out.write("\n")
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


def run_backup(url: str, file: Path, *, from_leader: bool, verify: bool, timeout: float, stream: TextIO | None = None) -> int:
    """The ``backup`` command: 0 written and verified; 2 failed (the message says why)."""
    from talentnest.launcher.remote import key_from_environment

    progress = Progress(stream)
    key = key_from_environment("backup")
    target = asyncio.run(find_leader([url], timeout)) if from_leader else url
    if from_leader:
        progress.line(f"the leader answers at {target}")
    started = time.monotonic()
    manifest = asyncio.run(take_backup(target, key, file, progress=progress, verify=verify, timeout=timeout))
    took = time.monotonic() - started
    progress.line(
        f"wrote {file} ({_human(manifest.compressed_bytes)}, database {_human(manifest.raw_bytes)}) in {took:.1f} s: "
        f"LSN {manifest.lsn}, term {manifest.term}, from node-{manifest.node_id} ({manifest.node_role}); "
        f"manifest {manifest_path(file)}"
    )
    return 0
