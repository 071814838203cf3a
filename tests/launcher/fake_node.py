"""A stand-in node for launcher and harness tests: real DNS discovery, the real node's status endpoints.

Run as ``python fake_node.py`` with the real node's environment (HOST, PORT, SERVICE_NAME, DNS_SERVER,
JWT_SECRET, DATA_DIR). Every 0.2 s it resolves SERVICE_NAME with an A query to DNS_SERVER; the
leader is the highest ID among the answers. It serves /healthz, /readyz, /cluster/status, a signed
/cluster/checksum, and a toy signup and post (each raises its own applied LSN; nothing replicates).
Set FAKE_EXIT_CODE to make it exit at once with that code (a node that fails to start).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import sys
from pathlib import Path

import dns.asyncresolver
import dns.exception
import dns.resolver
from aiohttp import web

from talentnest.cluster.auth import HEADER, SignatureError, cluster_key, nonce_of, sign_answer, verify

RESOLVE_EVERY = 0.2


def node_id_of(address: str) -> int:
    octets = [int(part) for part in address.split(".")]
    return octets[2] * 256 + octets[3]


class FakeNode:
    def __init__(self, env):
        self.host = env["HOST"]
        self.port = int(env.get("PORT", "3000"))
        self.service = env.get("SERVICE_NAME", "backend-service")
        dns_host, _, dns_port = env["DNS_SERVER"].partition(":")
        self.resolver = dns.asyncresolver.Resolver(configure=False)
        self.resolver.nameservers = [dns_host]
        self.resolver.port = int(dns_port or 53)
        self.resolver.lifetime = 1.0
        self.key = cluster_key(jwt_secret=env["JWT_SECRET"], cluster_secret=env.get("CLUSTER_SECRET"))
        self.id = node_id_of(self.host)
        self.members: list[str] = []
        self.leader: str | None = None
        self.term = 0
        self.applied_lsn = 0
        self.data_file = Path(env.get("DATA_DIR", ".")) / "fake.json"
        if self.data_file.exists():
            self.applied_lsn = json.loads(self.data_file.read_text())["applied_lsn"]

    async def discover(self) -> None:
        while True:
            try:
                answer = await self.resolver.resolve(self.service, "A")
                members = sorted({record.address for record in answer}, key=node_id_of)
            except (dns.exception.DNSException, OSError) as exc:
                print(f"discovery: {self.service} did not resolve: {exc!r}", file=sys.stderr, flush=True)
                members = []
            leader = members[-1] if members else None
            if members != self.members:
                print(f"discovery: members {members}", file=sys.stderr, flush=True)
            if leader != self.leader:
                self.term += 1
                leader_id = node_id_of(leader) if leader else None
                print(f"election: term {self.term} leader {leader_id} http://{leader}:{self.port}", file=sys.stderr, flush=True)
            self.members, self.leader = members, leader
            await asyncio.sleep(RESOLVE_EVERY)

    def role(self) -> str:
        if self.leader is None:
            return "candidate"
        return "leader" if self.leader == self.host else "follower"

    def status(self) -> dict:
        leader_id = node_id_of(self.leader) if self.leader else None
        return {
            "current_node_id": self.id,
            "current_role": self.role(),
            "leader_id": leader_id,
            "leader_address": f"http://{self.leader}:{self.port}" if self.leader else None,
            "total_nodes": len(self.members),
            "term": self.term,
            "applied_lsn": self.applied_lsn,
            "nodes": [
                {
                    "id": node_id_of(address),
                    "address": f"http://{address}:{self.port}",
                    "role": "leader" if address == self.leader else "follower",
                    "is_leader": address == self.leader,
                    "healthy": True,
                    "applied_lsn": self.applied_lsn if address == self.host else None,
                    "lag": None,
                }
                for address in self.members
            ],
        }

    def write(self) -> int:
        self.applied_lsn += 1
        self.data_file.write_text(json.dumps({"applied_lsn": self.applied_lsn}))
        return self.applied_lsn

    async def healthz(self, request):
        return web.json_response({"ok": True})

    async def readyz(self, request):
        ready = self.leader is not None
        return web.json_response({"ready": ready, "leader_id": self.status()["leader_id"]}, status=200 if ready else 503)

    async def cluster_status(self, request):
        return web.json_response(self.status())

    async def checksum(self, request):
        try:
            verify(self.key, request.headers.get(HEADER), request.method, request.path_qs, await request.read())
        except SignatureError as exc:
            return web.json_response({"error": {"code": "unauthorized", "message": str(exc)}}, status=401)
        digest = hashlib.sha256(f"fake-{self.applied_lsn}".encode()).hexdigest()
        body = json.dumps({"checksum": digest, "applied_lsn": self.applied_lsn}).encode()
        # Signed for this very request, as a real node signs its answers (docs/cluster.md, "Trust between nodes").
        signature = sign_answer(self.key, nonce_of(request.headers[HEADER]), 200, hashlib.sha256(body).hexdigest())
        return web.Response(body=body, content_type="application/json", headers={HEADER: signature})

    async def signup(self, request):
        body = await request.json()
        lsn = self.write()
        user = {"id": lsn, "username": body["username"], "name": body.get("name")}
        token = f"fake-token-{body['username']}"
        return web.json_response({"token": token, "user": user}, status=201, headers={"X-Cluster-LSN": str(lsn)})

    async def post(self, request):
        if not request.headers.get("Authorization", "").startswith("Bearer "):
            return web.json_response({"error": {"code": "unauthorized", "message": "no token"}}, status=401)
        body = await request.json()
        lsn = self.write()
        return web.json_response({"id": lsn, "content": body["content"]}, status=201, headers={"X-Cluster-LSN": str(lsn)})


async def main() -> None:
    if os.environ.get("FAKE_EXIT_CODE"):
        print("fake node: told to fail at start", file=sys.stderr, flush=True)
        raise SystemExit(int(os.environ["FAKE_EXIT_CODE"]))
    node = FakeNode(os.environ)
    app = web.Application()
    app.router.add_get("/healthz", node.healthz)
    app.router.add_get("/readyz", node.readyz)
    app.router.add_get("/cluster/status", node.cluster_status)
    app.router.add_get("/cluster/checksum", node.checksum)
    app.router.add_post("/api/auth/signup", node.signup)
    app.router.add_post("/api/posts", node.post)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, node.host, node.port, reuse_address=True).start()
    print(f"fake node {node.id} listening on {node.host}:{node.port}", file=sys.stderr, flush=True)
    discovery = asyncio.create_task(node.discover())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    print(f"fake node {node.id} shutting down", file=sys.stderr, flush=True)
    discovery.cancel()
    await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
