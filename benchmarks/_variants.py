#!/usr/bin/env python3
"""A Talent Nest node with issue 13's candidate changes patched in at start: prototypes for candidates.py, not the product.

``TN_VARIANTS`` names the changes (comma-separated); with none it is the node as shipped. Each
patch stands for a change the optimisation work could make in ``src/``, done here from outside so
that every variant runs side by side with the unchanged node in one benchmark run:

- ``orjson-http``: answers rendered with orjson (Starlette's ``JSONResponse.render``).
- ``orjson-wire``: node-to-node bodies parsed and written with orjson (``cluster.wire``,
  ``LogEntry.from_dict``'s re-dump of each change, the transport's replies).
- ``no-response-model``: a route's own dict is sent as it is, without FastAPI's validation and
  serialisation against ``response_model`` (the schema is unchanged: the models stay declared).
- ``account-cache``: ``UserRepo.exists`` remembers for 5 s that an account exists (the token check's query).
- ``token-cache``: a token's verified user is remembered until its expiry (PyJWT runs once per token).
- ``cluster-fast-path``: ``/cluster/*`` is served ahead of the middleware stack (metrics, the
  cluster middleware, FastAPI's own layers, the router), behind ``BodyLimit`` still.
- ``granian``: the app served by granian (embedded, on uvloop) instead of uvicorn. uvicorn's
  ``GuardedHttpTools`` does not apply; granian's own header deadline (``CLIENT_TIMEOUT``) and
  buffer size are set instead, and ``BodyLimit`` still reads the body.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

VARIANTS = {name.strip() for name in os.environ.get("TN_VARIANTS", "").split(",") if name.strip()}
KNOWN = {"orjson-http", "orjson-wire", "no-response-model", "account-cache", "token-cache", "cluster-fast-path", "granian"}


def _dumps_text(obj, **_options) -> str:
    import orjson

    return orjson.dumps(obj).decode()


class _OrjsonModule:
    """Stands in for the ``json`` module inside one module of the node."""

    def __init__(self) -> None:
        import orjson

        self.loads = orjson.loads
        self.dumps = _dumps_text
        self.JSONDecodeError = orjson.JSONDecodeError


# Each candidate is a list of (owner, attribute, new value): ``switch_on`` sets them and answers the
# originals, ``switch_off`` puts those back, so that layer_costs.py can alternate candidates in one process.
Patch = list[tuple[object, str, object]]


def switch_on(patch: Patch) -> Patch:
    originals = [(owner, name, getattr(owner, name)) for owner, name, _ in patch]
    for owner, name, value in patch:
        setattr(owner, name, value)
    return originals


def switch_off(originals: Patch) -> None:
    for owner, name, value in reversed(originals):
        setattr(owner, name, value)


def orjson_http() -> Patch:
    import orjson
    from starlette.responses import JSONResponse

    return [(JSONResponse, "render", lambda self, content: orjson.dumps(content))]


def orjson_wire() -> Patch:
    from talentnest.cluster import transport, wire
    from talentnest.store import _db

    shim = _OrjsonModule()
    return [(wire, "json", shim), (_db, "json", shim), (transport, "json", shim)]


def no_response_model(*, with_orjson: bool = False) -> Patch:
    from fastapi import routing

    original = routing.serialize_response
    dumps = _dumps_text if with_orjson else (lambda obj: json.dumps(obj, separators=(",", ":"), ensure_ascii=False))

    async def as_built(*, field=None, response_content, dump_json: bool = False, **options):
        if field is not None and isinstance(response_content, dict):
            return dumps(response_content).encode() if dump_json else response_content
        return await original(field=field, response_content=response_content, dump_json=dump_json, **options)

    return [(routing, "serialize_response", as_built)]


def account_cache(ttl: float = 5.0) -> Patch:
    from talentnest.store.users import UserRepo

    original = UserRepo.exists
    known: dict[int, float] = {}

    def exists(self, user_id: int) -> bool:
        now = time.monotonic()
        if known.get(user_id, 0.0) > now:
            return True
        found = original(self, user_id)
        if found:
            if len(known) > 100_000:
                known.clear()
            known[user_id] = now + ttl
        return found

    return [(UserRepo, "exists", exists)]


def token_cache() -> Patch:
    from talentnest.services.auth import Tokens

    original = Tokens.user_id
    verified: dict[str, tuple[int, float]] = {}

    def user_id(self, token: str) -> int:
        hit = verified.get(token)
        now = self._clock()
        if hit is not None and hit[1] > now:
            return hit[0]
        found = original(self, token)
        import jwt

        expiry = jwt.decode(token, options={"verify_signature": False})["exp"]
        if len(verified) > 100_000:
            verified.clear()
        verified[token] = (found, expiry)
        return found

    return [(Tokens, "user_id", user_id)]


def cluster_fast_path() -> Patch:
    from starlette.routing import Route

    from talentnest import app as app_module
    from talentnest.limits import CLUSTER_PREFIX, MAX_CLUSTER_BODY_BYTES, BodyLimit

    original_create = app_module.create_app

    def create_app(settings, **options):
        app = original_create(settings, **options)
        routes = {
            route.path: route for route in app.router.routes if isinstance(route, Route) and route.path.startswith(CLUSTER_PREFIX)
        }
        build = app.build_middleware_stack

        def build_with_fast_path():
            stack = build()
            direct = {path: BodyLimit(route.app, max_bytes=MAX_CLUSTER_BODY_BYTES) for path, route in routes.items()}
            methods = {path: route.methods or set() for path, route in routes.items()}

            async def dispatch(scope, receive, send):
                if scope["type"] == "http":
                    target = direct.get(scope["path"])
                    if target is not None and scope["method"] in methods[scope["path"]]:
                        scope["app"] = app
                        await target(scope, receive, send)
                        return
                await stack(scope, receive, send)

            return dispatch

        app.build_middleware_stack = build_with_fast_path
        return app

    return [(app_module, "create_app", create_app)]


def patch_of(name: str, variants: set[str] | frozenset[str] = frozenset()) -> Patch:
    """The patch of one candidate (``no-response-model`` answers with orjson when ``orjson-http`` is among ``variants``)."""
    if name == "no-response-model":
        return no_response_model(with_orjson="orjson-http" in variants)
    makers = {
        "orjson-http": orjson_http,
        "orjson-wire": orjson_wire,
        "account-cache": account_cache,
        "token-cache": token_cache,
        "cluster-fast-path": cluster_fast_path,
    }
    return makers[name]()


class GranianServer:
    """Stands in for ``cli.NodeServer``: serves the config's app with granian's embedded server on uvloop."""

    def __init__(self, config, *, before_exit) -> None:
        self.config = config
        self.before_exit = before_exit
        self.started = False

    def run(self) -> None:
        import asyncio
        import signal

        import uvloop
        from granian.constants import HTTPModes, Interfaces
        from granian.http import HTTP1Settings
        from granian.server.embed import Server

        from talentnest.limits import CLIENT_TIMEOUT, MAX_HEAD_BYTES

        server = Server(
            self.config.app,
            address=self.config.host,
            port=self.config.port,
            interface=Interfaces.ASGI,
            http=HTTPModes.http1,
            websockets=False,
            backlog=2048,
            http1_settings=HTTP1Settings(header_read_timeout=int(CLIENT_TIMEOUT * 1000), max_buffer_size=MAX_HEAD_BYTES),
            log_enabled=False,
        )

        async def serve() -> None:
            loop = asyncio.get_running_loop()
            leaving: set[asyncio.Task] = set()

            def leave_then_stop() -> None:
                async def go() -> None:
                    try:
                        await asyncio.wait_for(self.before_exit(), timeout=8)
                    finally:
                        server.stop()

                task = loop.create_task(go())
                leaving.add(task)
                task.add_done_callback(leaving.discard)

            loop.add_signal_handler(signal.SIGTERM, leave_then_stop)
            loop.add_signal_handler(signal.SIGINT, server.stop)
            self.started = True
            await server.serve()

        uvloop.run(serve())


def main() -> int:
    unknown = VARIANTS - KNOWN
    if unknown:
        print(f"_variants.py: unknown TN_VARIANTS {sorted(unknown)}; known: {sorted(KNOWN)}", file=sys.stderr)
        return 2
    for name in sorted(VARIANTS - {"granian"}):
        switch_on(patch_of(name, VARIANTS))
    from talentnest import cli

    if "granian" in VARIANTS:
        cli.NodeServer = GranianServer
    print(f"_variants.py: node with {sorted(VARIANTS) or 'no change'}", flush=True)
    return cli.run_node(os.environ)


if __name__ == "__main__":
    raise SystemExit(main())
