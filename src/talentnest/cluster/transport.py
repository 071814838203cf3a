"""Signed HTTP calls to peers whose answers are checked, leaving from this node's own address, over
kept-alive connections (TLS with this node's certificate when configured)."""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import hashlib
import json
import logging
import random
import ssl
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp

from talentnest.cluster import auth
from talentnest.errors import PeerUnreachable

log = logging.getLogger("talentnest.cluster")

# After a peer accepted only a previous key (it has not been given the new one yet), keep using that
# key for it this long before trying the current one again.
KEY_FALLBACK_SECONDS = 10.0


class PeerRefused(PeerUnreachable):
    """Nobody listens at the peer's address: its process is not running."""

    code = "peer_refused"


class ForgedAnswer(PeerUnreachable):
    """The answer's signature is missing or wrong: something on the path altered or made it. It is
    treated as no answer at all (and logged with ``security:``)."""

    code = "forged_answer"


@dataclass(frozen=True)
class Reply:
    status: int
    headers: Mapping[str, str]
    body: bytes
    verified: bool = False  # the answer's signature was checked against our request's nonce

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class _Signer:
    """How one request is signed: with which key, in which form."""

    key: bytes
    legacy: bool = False

    def header(self, method: str, target: str, body: bytes, nonce: str, now: float) -> str:
        if self.legacy:
            return auth.sign_legacy(self.key, method, target, body, now=now)
        return auth.sign(self.key, method, target, body, now=now, nonce=nonce)


def refused_signature(status: int, body: bytes) -> bool:
    """Whether an answer is a node's refusal of our signature (401 ``invalid_signature``: nothing ran there)."""
    if status != 401:
        return False
    try:
        return json.loads(body)["error"]["code"] == "invalid_signature"
    except (ValueError, KeyError, TypeError):
        return False


class PeerClient:
    """One aiohttp session for every node-to-node call (aiohttp: see DESIGN.md section 5).

    Every call is signed with the cluster key and a fresh nonce from ``rng``, and its answer must be
    signed for that nonce with the same key: an answer that is not raises ``ForgedAnswer`` (a
    ``PeerUnreachable``), so no caller ever acts on it. A peer that refuses the current key (401
    ``invalid_signature``: it has not been given it yet, during a rotation) is asked again with each
    previous key, and, behind ``accept_legacy``, in the older unsigned-answer form. Connections are
    bound to ``local_address`` so that a rule dropping this node's address really cuts it off.
    Failures raise PeerUnreachable (PeerRefused when the connection was refused).
    """

    def __init__(
        self,
        keys: auth.Keyring | bytes,
        *,
        local_address: str | None,
        rng: random.Random | None = None,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        tls: ssl.SSLContext | None = None,
        accept_legacy: bool = False,
    ):
        self.keys = auth.Keyring.of(keys)
        self.local_address = local_address
        self.rng = rng or random.SystemRandom()
        self.wall = wall
        self.monotonic = monotonic
        self.tls = tls
        self.accept_legacy = accept_legacy
        self._fallback: dict[str, tuple[_Signer, float]] = {}  # base URL -> the signer it accepted, until when
        self._told: set[str] = set()  # peers whose fallback was logged
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(
            local_addr=(self.local_address, 0) if self.local_address else None,
            limit=512,
            limit_per_host=64,
            keepalive_timeout=30,
            ttl_dns_cache=None,
            use_dns_cache=False,
            ssl=self.tls if self.tls is not None else False,
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

    # --- signing -------------------------------------------------------------------------------

    def _nonce(self) -> str:
        return f"{self.rng.getrandbits(4 * auth.NONCE_HEX_DIGITS):0{auth.NONCE_HEX_DIGITS}x}"

    def _signers(self, base_url: str) -> list[_Signer]:
        """The ways to sign for this peer, the one it accepted last first."""
        signers = [_Signer(key) for key in self.keys.accepted(self.wall())]
        if self.accept_legacy:
            signers += [_Signer(key, legacy=True) for key in self.keys.accepted(self.wall())]
        remembered = self._fallback.get(base_url)
        if remembered is not None:
            signer, until = remembered
            if self.monotonic() < until and signer in signers:
                signers.remove(signer)
                signers.insert(0, signer)
            else:
                del self._fallback[base_url]
        return signers

    def _accepted(self, base_url: str, signer: _Signer) -> None:
        if signer == _Signer(self.keys.current):
            self._fallback.pop(base_url, None)
            self._told.discard(base_url)
            return
        if base_url not in self._told:
            self._told.add(base_url)
            what = "the older signature form" if signer.legacy else "a previous cluster key"
            log.info("cluster: %s accepts only %s (a key rotation or an upgrade is rolling through the cluster)", base_url, what)
        self._fallback[base_url] = (signer, self.monotonic() + KEY_FALLBACK_SECONDS)

    def _headers(self, signer: _Signer, method: str, target: str, body: bytes, nonce: str, extra) -> dict[str, str]:
        headers = dict(extra or {})
        headers[auth.HEADER] = signer.header(method, target, body, nonce, self.wall())
        if body and "Content-Type" not in headers:
            headers["Content-Type"] = "application/json"
        return headers

    def _check_answer(
        self, base_url: str, target: str, signer: _Signer, nonce: str, status: int, header, body_sha256: str
    ) -> None:
        if signer.legacy:
            return  # an older release signs no answer; accepted only behind CLUSTER_ACCEPT_LEGACY_SIGNATURES
        try:
            auth.verify_answer(signer.key, header, nonce, status, body_sha256)
        except auth.SignatureError as exc:
            path = target.split("?")[0]
            log.warning("security: refused the answer of %s to %s (HTTP %d): %s", base_url, path, status, exc)
            raise ForgedAnswer(f"{base_url} answered {path} with an answer that fails its signature: {exc}") from None

    # --- calls ---------------------------------------------------------------------------------

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
        """One request; ``target`` is the path with its query string. A signed call's answer is checked
        (ForgedAnswer if it fails)."""
        if not sign:
            return await self._send(method, base_url, target, body, timeout, dict(headers or {}))
        signers = self._signers(base_url)
        for index, signer in enumerate(signers):
            nonce = self._nonce()
            reply = await self._send(
                method, base_url, target, body, timeout, self._headers(signer, method, target, body, nonce, headers)
            )
            if refused_signature(reply.status, reply.body) and index + 1 < len(signers):
                continue  # refused before anything ran there: try the next key
            if not refused_signature(reply.status, reply.body):
                self._check_answer(
                    base_url,
                    target,
                    signer,
                    nonce,
                    reply.status,
                    reply.headers.get(auth.HEADER),
                    hashlib.sha256(reply.body).hexdigest(),
                )
                self._accepted(base_url, signer)
                if not signer.legacy:
                    reply = dataclasses.replace(reply, verified=True)
            return reply
        raise AssertionError("unreachable: there is always a current key")

    async def _send(self, method: str, base_url: str, target: str, body: bytes, timeout: float, headers: dict) -> Reply:
        try:
            async with asyncio.timeout(timeout):
                async with self.session.request(method, base_url + target, data=body or None, headers=headers) as response:
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
        self, base_url: str, target: str, *, connect_timeout: float, start_timeout: float, read_timeout: float
    ) -> AsyncIterator[_ResponseStream]:
        """A signed GET whose body is read in chunks by the caller (snapshots). A streamed answer's header
        signature covers its status and nonce (the body hash reads ``streamed``); the caller checks the
        body's own signed records with ``authenticate``. A non-streamed answer is checked whole here.
        The answer's status line must come within ``start_timeout`` (a request lost on the way is given
        up then, not after ``read_timeout``, the longest wait allowed between two reads of the body)."""
        timeout = aiohttp.ClientTimeout(total=None, connect=connect_timeout, sock_read=read_timeout)
        signers = self._signers(base_url)
        path = target.split("?")[0]
        for index, signer in enumerate(signers):
            nonce = self._nonce()
            headers = self._headers(signer, "GET", target, b"", nonce, None)
            try:
                try:
                    async with asyncio.timeout(start_timeout):
                        started = await self.session.get(base_url + target, headers=headers, timeout=timeout)
                except TimeoutError:
                    raise PeerUnreachable(f"{base_url} did not start answering GET {path} within {start_timeout:g} s") from None
                async with started as response:
                    header = response.headers.get(auth.HEADER)
                    if response.status != 200:
                        body = await response.content.read(1 << 20)
                        if refused_signature(response.status, body) and index + 1 < len(signers):
                            continue
                        if not refused_signature(response.status, body):
                            self._check_answer(
                                base_url, target, signer, nonce, response.status, header, hashlib.sha256(body).hexdigest()
                            )
                        yield _ResponseStream(response, signer, nonce, self, base_url, target, body=body)
                        return
                    self._check_answer(base_url, target, signer, nonce, 200, header, auth.STREAMED)
                    self._accepted(base_url, signer)
                    yield _ResponseStream(response, signer, nonce, self, base_url, target)
                    return
            except TimeoutError:
                raise PeerUnreachable(f"{base_url} stalled while sending {path}") from None
            except aiohttp.ClientConnectorError as exc:
                raise PeerUnreachable(f"{base_url} is unreachable: {exc}") from None
            except aiohttp.ClientError as exc:
                raise PeerUnreachable(f"{base_url} failed during {path}: {exc}") from None


class _ResponseStream:
    """An aiohttp response as a ``ChunkStream``: status, headers, then the body in chunks; ``authenticate``
    checks one of the body's signed records against the request's nonce and key."""

    def __init__(
        self,
        response: aiohttp.ClientResponse,
        signer: _Signer,
        nonce: str,
        client: PeerClient,
        base_url: str,
        target: str,
        *,
        body: bytes | None = None,
    ):
        self.status = response.status
        self.headers = response.headers
        self._response = response
        self._signer = signer
        self._nonce = nonce
        self._client = client
        self._base_url = base_url
        self._target = target
        self._body = body

    async def chunks(self, size: int) -> AsyncIterator[bytes]:
        if self._body is not None:
            if self._body:
                yield self._body
            return
        async for chunk in self._response.content.iter_chunked(size):
            yield chunk

    async def read_exactly(self, size: int) -> bytes:
        """The next ``size`` bytes of the body, fewer only where it ends."""
        if self._body is not None:
            part, self._body = self._body[:size], self._body[size:]
            return part
        try:
            return await self._response.content.readexactly(size)
        except asyncio.IncompleteReadError as exc:
            return exc.partial

    def authenticate(self, signature: str, body_sha256: str) -> None:
        """Raise ForgedAnswer (logged) unless ``signature`` signs ``body_sha256`` (the hex SHA-256 of the
        body so far) as an answer to this request."""
        self._client._check_answer(self._base_url, self._target, self._signer, self._nonce, 200, signature, body_sha256)
