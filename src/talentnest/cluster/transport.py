"""Signed HTTP calls to peers, leaving from this node's own address, over kept-alive connections."""

from __future__ import annotations

import asyncio
import errno
import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp

from talentnest.cluster import auth
from talentnest.errors import PeerUnreachable


class PeerRefused(PeerUnreachable):
    """Nobody listens at the peer's address: its process is not running."""

    code = "peer_refused"


@dataclass(frozen=True)
class Reply:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class PeerClient:
    """One aiohttp session for every node-to-node call (aiohttp: see DESIGN.md section 5).

    Every call is signed with the cluster key; connections are bound to ``local_address`` so
    that a rule dropping this node's address really cuts it off. Failures raise PeerUnreachable
    (PeerRefused when the connection was refused).
    """

    def __init__(self, key: bytes, *, local_address: str | None):
        self.key = key
        self.local_address = local_address
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(
            local_addr=(self.local_address, 0) if self.local_address else None,
            limit=512,
            limit_per_host=64,
            keepalive_timeout=30,
            ttl_dns_cache=None,
            use_dns_cache=False,
        )
        self._session = aiohttp.ClientSession(connector=connector, auto_decompress=False, skip_auto_headers=("User-Agent",))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("peer client is not started")
        return self._session

    def _headers(self, method: str, target: str, body: bytes, extra: Mapping[str, str] | None) -> dict[str, str]:
        headers = dict(extra or {})
        headers[auth.HEADER] = auth.sign(self.key, method, target, body)
        if body and "Content-Type" not in headers:
            headers["Content-Type"] = "application/json"
        return headers

    async def call(
        self,
        method: str,
        base_url: str,
        target: str,
        *,
        body: bytes = b"",
        timeout: float,
        headers: Mapping[str, str] | None = None,
        sign: bool = True,
    ) -> Reply:
        """One request; ``target`` is the path with its query string."""
        all_headers = self._headers(method, target, body, headers) if sign else dict(headers or {})
        try:
            async with asyncio.timeout(timeout):
                async with self.session.request(method, base_url + target, data=body or None, headers=all_headers) as response:
                    payload = await response.read()
                    return Reply(response.status, response.headers, payload)
        except TimeoutError:
            raise PeerUnreachable(f"{base_url} did not answer {method} {target.split('?')[0]} within {timeout:g} s") from None
        except aiohttp.ClientConnectorError as exc:
            if getattr(exc, "os_error", None) is not None and exc.os_error.errno == errno.ECONNREFUSED:
                raise PeerRefused(f"{base_url} refused the connection") from None
            raise PeerUnreachable(f"{base_url} is unreachable: {exc.strerror or exc}") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise PeerUnreachable(f"{base_url} failed during {method} {target.split('?')[0]}: {exc}") from None

    async def call_json(self, method: str, base_url: str, target: str, payload: Any = None, *, timeout: float) -> Reply:
        body = b"" if payload is None else json.dumps(payload, separators=(",", ":")).encode()
        return await self.call(method, base_url, target, body=body, timeout=timeout)

    @asynccontextmanager
    async def stream(
        self, base_url: str, target: str, *, connect_timeout: float, read_timeout: float
    ) -> AsyncIterator[_ResponseStream]:
        """A signed GET whose body is read in chunks by the caller (snapshots)."""
        headers = self._headers("GET", target, b"", None)
        timeout = aiohttp.ClientTimeout(total=None, connect=connect_timeout, sock_read=read_timeout)
        try:
            async with self.session.get(base_url + target, headers=headers, timeout=timeout) as response:
                yield _ResponseStream(response)
        except TimeoutError:
            raise PeerUnreachable(f"{base_url} stalled while sending {target.split('?')[0]}") from None
        except aiohttp.ClientConnectorError as exc:
            raise PeerUnreachable(f"{base_url} is unreachable: {exc}") from None
        except aiohttp.ClientError as exc:
            raise PeerUnreachable(f"{base_url} failed during {target.split('?')[0]}: {exc}") from None


class _ResponseStream:
    """An aiohttp response as a ``ChunkStream``: status, headers, then the body in chunks."""

    def __init__(self, response: aiohttp.ClientResponse):
        self.status = response.status
        self.headers = response.headers
        self._response = response

    async def chunks(self, size: int) -> AsyncIterator[bytes]:
        async for chunk in self._response.content.iter_chunked(size):
            yield chunk
