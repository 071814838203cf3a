"""The peer client against a real HTTP server on loopback: an answer is returned only when it is signed for
its request; a peer that has not been given the new key is asked again with the previous one (and that
key is used for it for a while); the older unsigned form is used only when a rolling upgrade allows it."""

from __future__ import annotations

import asyncio
import hashlib
import json
import random

import pytest
from aiohttp import web

from talentnest.cluster import auth
from talentnest.cluster.auth import Keyring
from talentnest.cluster.transport import ForgedAnswer, PeerClient

OLD, NEW = b"old-cluster-key-old-cluster-key!", b"new-cluster-key-new-cluster-key!"
NOW = 1_700_000_000.0


class Peer:
    """A node as far as signatures go: checks each request with ``keys`` (the older form too, if
    ``legacy``) and answers ``{"ok": true}``, signed (or altered by ``tamper``)."""

    def __init__(self, keys: Keyring, *, legacy: bool = False, signs: bool = True):
        self.verifier = auth.RequestAuth(keys, lambda: NOW, accept_legacy=legacy)
        self.signs = signs
        self.tamper = lambda body: body
        self.seen: list[str] = []

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        header = request.headers.get(auth.HEADER)
        self.seen.append(header or "")
        try:
            verified = self.verifier.check({}, header, request.method, request.raw_path, body)
        except auth.SignatureError as exc:
            error = {"error": {"code": "invalid_signature", "message": str(exc)}}
            return web.json_response(error, status=401)
        answer = json.dumps({"ok": True}).encode()
        headers = {}
        signature = self.verifier.sign_answer(verified, 200, hashlib.sha256(answer).hexdigest())
        if signature is not None and self.signs:
            headers[auth.HEADER] = signature
        return web.Response(body=self.tamper(answer), headers=headers, content_type="application/json")


async def serve(peer: Peer) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", peer.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


def client(keys: Keyring, **options) -> PeerClient:
    return PeerClient(keys, local_address=None, rng=random.Random(3), wall=lambda: NOW, **options)


def run(peer: Peer, keys: Keyring, calls: int = 1, **options):
    async def go():
        runner, url = await serve(peer)
        peer_client = client(keys, **options)
        await peer_client.start()
        try:
            return [await peer_client.call("POST", url, "/cluster/heartbeat", body=b"{}", timeout=5) for _ in range(calls)]
        finally:
            await peer_client.close()
            await runner.cleanup()

    return asyncio.run(go())


def test_a_signed_answer_is_returned_and_a_forged_or_unsigned_one_raises(caplog):
    (reply,) = run(Peer(Keyring(NEW)), Keyring(NEW))
    assert reply.status == 200 and reply.json() == {"ok": True}

    altered = Peer(Keyring(NEW))
    altered.tamper = lambda body: body.replace(b"true", b"null")
    with pytest.raises(ForgedAnswer, match="fails its signature"):
        run(altered, Keyring(NEW))
    assert "security: refused the answer of http://127.0.0.1" in caplog.text
    with pytest.raises(ForgedAnswer):
        run(Peer(Keyring(NEW), signs=False), Keyring(NEW))


def test_a_peer_without_the_new_key_is_asked_again_with_the_previous_one_which_it_then_gets_first():
    peer = Peer(Keyring(OLD))
    replies = run(peer, Keyring(NEW, (OLD,), previous_until=NOW + 60), calls=3)
    assert [r.status for r in replies] == [200, 200, 200]
    assert len(peer.seen) == 4, "one refusal, then the previous key at once for the next calls"
    # After the stated time the previous key is not offered: the peer's refusal is the answer.
    (refused,) = run(Peer(Keyring(OLD)), Keyring(NEW, (OLD,), previous_until=NOW - 1))
    assert refused.status == 401


def test_the_older_unsigned_form_is_used_only_when_a_rolling_upgrade_allows_it():
    old_node = Peer(Keyring(NEW), legacy=True, signs=False)
    old_node.verifier.accept_legacy = True
    # An old node refuses the new form outright (it cannot parse it): simulate with a verifier of the old form only.
    original = old_node.verifier.check

    def old_check(scope, header, method, target, body):
        if header and ",n=" in header:
            raise auth.SignatureError("malformed X-Cluster-Signature")
        return original(scope, header, method, target, body)

    old_node.verifier.check = old_check  # type: ignore[method-assign]
    (refused,) = run(old_node, Keyring(NEW))
    assert refused.status == 401
    (accepted,) = run(old_node, Keyring(NEW), accept_legacy=True)
    assert accepted.status == 200 and accepted.json() == {"ok": True}
