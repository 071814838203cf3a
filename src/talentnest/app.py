"""Builds the ASGI app of one node: wires the store, the product and the cluster together."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute, Match, Mount, Route

from talentnest import __version__, api, http_errors, metrics, web
from talentnest.cluster import api as cluster_api
from talentnest.cluster.metrics import ClusterCollector
from talentnest.cluster.middleware import ClusterMiddleware
from talentnest.cluster.node import ClusterNode
from talentnest.cluster.replication import Replication
from talentnest.config import Settings
from talentnest.limits import BodyLimit
from talentnest.logs import NodeContext
from talentnest.services import AuthService, Passwords, PostService, Tokens, UserService
from talentnest.services.throttle import LoginThrottle, ThrottlePolicy
from talentnest.store import Database, Retention
from talentnest.store.posts import PostRepo
from talentnest.store.schema import product_database
from talentnest.store.users import UserRepo

log = logging.getLogger("talentnest.app")


def build_database(settings: Settings) -> Database:
    retention = Retention(max_entries=settings.log_retention_entries, max_bytes=settings.log_retention_bytes)
    return product_database(settings.data_dir, retention=retention)


def build_product(settings: Settings, db: Database, *, sharing_nodes: Callable[[], int] = lambda: 1) -> api.Product:
    """The product's services. ``sharing_nodes()`` is how many nodes share the login allowance
    (each node allows its share; see ``services.throttle``)."""
    users, posts = UserRepo(db), PostRepo(db)
    passwords = Passwords(
        time_cost=settings.argon2_time_cost,
        memory_kib=settings.argon2_memory_kib,
        parallelism=settings.argon2_parallelism,
    )
    tokens = Tokens(settings.jwt_secret, ttl=settings.jwt_ttl)
    policy = ThrottlePolicy(
        per_account=settings.login_max_failures,
        per_address=settings.login_max_failures_per_address,
        window=settings.login_window,
    )
    return api.Product(
        auth=AuthService(db, users, passwords, tokens, LoginThrottle(policy, sharing_nodes=sharing_nodes)),
        users=UserService(db, users),
        posts=PostService(db, posts, users),
        read=db.read,
    )


def write_classifier(routes: Sequence[BaseRoute]) -> Callable[[dict], bool]:
    """``is_write(scope)`` from the routes' declarative write marks."""
    write_routes = [r for r in routes if isinstance(r, APIRoute) and api.route_writes(r)]

    def is_write(scope: dict) -> bool:
        return any(route.matches(scope)[0] == Match.FULL for route in write_routes)

    return is_write


def find_layer(app: FastAPI, kind: type) -> object | None:
    """The instance of middleware ``kind`` in the app's built stack (None before the first request)."""
    layer = app.middleware_stack
    while layer is not None:
        if isinstance(layer, kind):
            return layer
        layer = getattr(layer, "app", None)
    return None


def create_app(settings: Settings, *, context: NodeContext | None = None) -> FastAPI:
    """The whole node as one ASGI app; the database opens and the node joins when it starts."""
    context = context or NodeContext()
    db = build_database(settings)
    node = ClusterNode(settings, db)
    node.replication = Replication(node, db)
    context.term_of = lambda: node.term
    context.id_of = lambda: node.node_id if node.address else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db.open()
        log.info("store: opened %s at LSN %d", db.path, db.last_lsn)
        try:
            await node.start()
            context.node_id = node.node_id
            yield
            if not node.stopping:
                await node.leave()
        finally:
            await node.stop()
            db.close()
            log.info("store: closed %s", db.path)

    app = FastAPI(
        title="Talent Nest",
        version=__version__,
        description="A talent network's API, served by every node of a replicated SQLite cluster.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.db = db
    app.state.node = node
    app.state.product = build_product(settings, db, sharing_nodes=node.members_alive)
    http_errors.install(app)
    app.include_router(api.router)

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict:
        """Alive: the process answers."""
        return {"status": "ok", "node_id": node.node_id}

    @app.get("/readyz", tags=["operations"], responses={503: {"description": "not ready"}})
    async def readyz() -> JSONResponse:
        """Ready to serve: synced with the leader, and a leader is known."""
        ready, reason = node.readiness()
        return JSONResponse({"ready": ready, "reason": reason, "node_id": node.node_id}, status_code=200 if ready else 503)

    registry = metrics.new_registry()
    app.state.metrics_registry = registry

    def forward_counts() -> tuple[int, int]:
        forwarder = find_layer(app, ClusterMiddleware)
        return (forwarder.forwarded, forwarder.forward_failures) if forwarder is not None else (0, 0)

    registry.register(ClusterCollector(node, version=__version__, forward_counts=forward_counts))
    request_stats = metrics.RequestStats()
    registry.register(request_stats)
    app.add_api_route(
        "/metrics",
        metrics.metrics_endpoint(registry),
        methods=["GET"],
        tags=["operations"],
        summary="Metrics",
        description="This node's metrics in the Prometheus text format: HTTP requests, role, term, LSNs, "
        "replication lag and counters. Public; holds no secret.",
        response_class=PlainTextResponse,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus text"}},
    )
    # First in the router: node-to-node calls are the hottest path and match on a plain prefix.
    app.router.routes[:0] = cluster_api.build_routes(node)
    app.router.routes.extend(web.routes())
    app.add_middleware(ClusterMiddleware, coordinator=node, db=db, is_write=write_classifier(api.router.routes), key=node.key)
    app.add_middleware(BodyLimit, timeout=settings.client_timeout)
    # Outermost: times every request, including those the layers below answer themselves. It matches
    # against the routes themselves (the product's router is included as one opaque entry).
    routes = [*api.router.routes, *(r for r in app.router.routes if isinstance(r, (Route, Mount)))]
    app.add_middleware(metrics.HttpMetrics, stats=request_stats, routes=routes)
    return app
