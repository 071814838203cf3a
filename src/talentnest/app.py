"""Builds the ASGI app of one node: wires the store, the product and the cluster together."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute, Match, Mount, Route

from talentnest import __version__, api, http_errors, metrics, tls, web
from talentnest import openapi as openapi_schema
from talentnest.cluster import api as cluster_api
from talentnest.cluster import auth, idempotency, keys
from talentnest.cluster.forward import ForwardStats, Responder
from talentnest.cluster.front import ClusterFront
from talentnest.cluster.metrics import ClusterCollector
from talentnest.cluster.middleware import ClusterMiddleware
from talentnest.cluster.node import ClusterNode
from talentnest.cluster.replication import Replication
from talentnest.cluster.runtime import Clock, Runtime, SystemClock, real_runtime
from talentnest.config import Settings
from talentnest.errors import TalentNestError
from talentnest.limits import BodyLimit
from talentnest.logs import NodeContext
from talentnest.routing import IndexedRouting, RouteIndex
from talentnest.services import AuthService, Passwords, PostService, Tokens, UserService
from talentnest.services.auth import random_token_key
from talentnest.services.exports import ExportService
from talentnest.services.throttle import LoginThrottle, ThrottlePolicy, WriteLimiter, WritePolicy
from talentnest.store import Database, Retention, archive, guard, snapshot, storage_failure
from talentnest.store.archiver import Archiver, ArchiveSettings
from talentnest.store.exports import ExportRepo
from talentnest.store.posts import PostRepo
from talentnest.store.schema import product_database
from talentnest.store.users import UserRepo

log = logging.getLogger("talentnest.app")


def build_database(settings: Settings, *, clock: Callable[[], float] = time.time, reader_threads: bool = True) -> Database:
    """The node's database; without ``reader_threads`` its reads run in the loop's executor (``store._readers``)."""
    retention = Retention(max_entries=settings.log_retention_entries, max_bytes=settings.log_retention_bytes)
    options = {} if reader_threads else {"readers": 0}
    return product_database(settings.data_dir, retention=retention, clock=clock, **options)


def build_archiver(settings: Settings, db: Database, *, wall: Callable[[], float]) -> Archiver | None:
    """The continuous archiver when ``ARCHIVE_DIR`` is set (store/archiver.py), else None. A bucket's credentials
    are read from the environment (once, here; config.py checked that they are there)."""
    if settings.archive_dir is None:
        return None
    timing = ArchiveSettings(
        interval=settings.archive_interval,
        snapshot_interval=settings.archive_snapshot_interval,
        retention=settings.archive_retention,
    )
    return Archiver(db, archive.open_store(settings.archive_dir), timing, wall=wall)


def build_product(
    settings: Settings,
    db: Database,
    *,
    sharing_nodes: Callable[[], int] = lambda: 1,
    clock: Clock | None = None,
    choose_token_key: Callable[[Sequence[str]], str] | None = None,
    new_token_key: Callable[[], str] | None = None,
) -> api.Product:
    """The product's services. ``sharing_nodes()`` is how many nodes share the login allowance
    (each node allows its share; see ``services.throttle``); ``clock`` is the runtime's;
    ``choose_token_key(kids)`` which accepted JWT key signs new tokens (during a key rotation);
    ``new_token_key()`` draws an account's token key (from the runtime's randomness)."""
    clock = clock or SystemClock()
    users, posts = UserRepo(db), PostRepo(db)
    passwords = Passwords(
        time_cost=settings.argon2_time_cost,
        memory_kib=settings.argon2_memory_kib,
        parallelism=settings.argon2_parallelism,
    )
    tokens = Tokens(
        settings.jwt_secret,
        ttl=settings.jwt_ttl,
        clock=clock.wall,
        previous=settings.jwt_secret_previous,
        previous_until=settings.previous_secrets_until,
        choose_key=choose_token_key,
    )
    policy = ThrottlePolicy(
        per_account=settings.login_max_failures,
        per_address=settings.login_max_failures_per_address,
        window=settings.login_window,
    )
    return api.Product(
        auth=AuthService(
            db,
            users,
            passwords,
            tokens,
            LoginThrottle(policy, sharing_nodes=sharing_nodes, clock=clock.monotonic),
            new_token_key=new_token_key or random_token_key,
        ),
        users=UserService(db, users),
        posts=PostService(db, posts, users),
        exports=ExportService(db, users, ExportRepo(db)),
        write_limits=WriteLimiter(
            WritePolicy(
                per_account=settings.write_limit_per_account,
                per_address=settings.write_limit_per_address,
                window=settings.write_limit_window,
            ),
            clock=clock.monotonic,
        ),
        read=db.read,
    )


def write_classifier(routes: Sequence[BaseRoute]) -> Callable[[dict], bool]:
    """``is_write(scope)`` from the routes' declarative write marks, decided once per route here: a request
    is matched only against the write routes of its method (a GET, the bulk of the traffic, against none)
    that can match its path (``routing.RouteIndex``)."""
    by_method: dict[str, RouteIndex] = {}
    for method in {m for route in routes if isinstance(route, APIRoute) for m in route.methods}:
        writes = [r for r in routes if isinstance(r, APIRoute) and method in r.methods and api.route_writes(r)]
        if writes:
            by_method[method] = RouteIndex(writes)

    def is_write(scope: dict) -> bool:
        index = by_method.get(scope["method"])
        return index is not None and any(
            route.matches(scope)[0] == Match.FULL for route in index.candidates(scope["path"], scope.get("root_path", ""))
        )

    return is_write


# The routes the router tries first: among the routes of its path's group (``routing.RouteIndex``) it tries
# them in order, and a read of a post by its id (most of the traffic) would come after the two /api/posts
# routes (once after 17 of every route: benchmarks/README.md, issue 13). None of the routes before it matches
# its paths, so the same route answers every request; the schema keeps the declared order (``openapi.install``).
BUSIEST = (("GET", "/api/posts/{post_id}"),)


def tried_first(routes: list[BaseRoute], busiest: Sequence[tuple[str, str]]) -> None:
    """Move the routes of ``busiest`` (method, path) to the front of ``routes``, in place, in that order."""
    first = [
        route
        for method, path in busiest
        for route in routes
        if isinstance(route, APIRoute) and route.path == path and method in route.methods
    ]
    routes[:] = [*first, *(route for route in routes if route not in first)]


def create_app(
    settings: Settings,
    *,
    context: NodeContext | None = None,
    runtime: Runtime | None = None,
    data_lock: guard.DataDirLock | None = None,
) -> FastAPI:
    """The whole node as one ASGI app; the database opens and the node joins when it starts.

    ``runtime`` is the node's outside world (clocks, randomness, network, discovery): the real one
    unless a caller (the simulation) gives its own. ``data_lock`` is the data directory's lock when
    the caller already holds it (the CLI takes it first, to refuse a second process with one line).
    """
    context = context or NodeContext()
    runtime = runtime or real_runtime(tls=tls.client_context(settings), accept_legacy=settings.cluster_accept_legacy_signatures)
    db = build_database(settings, clock=runtime.clock.wall, reader_threads=runtime.threads)
    node = ClusterNode(settings, db, runtime)
    signatures = auth.RequestAuth(
        node.key,
        runtime.clock.wall,
        accept_legacy=settings.cluster_accept_legacy_signatures,
        require_peer_certificate=settings.tls,
    )
    replication = Replication(node, db, syncing=lambda: node.worker.syncing, wait_applied=node.waiters.wait)
    node.replication = replication
    node.maintenance.append(lambda: idempotency.expire(db, runtime.clock.wall() - idempotency.TTL))
    context.term_of = lambda: node.term
    archiver = build_archiver(settings, db, wall=runtime.clock.wall)
    context.id_of = lambda: node.node_id if node.address else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        lock = data_lock or guard.DataDirLock(settings.data_dir)
        lock.acquire(owner=f"node at {settings.advertise_address or settings.host}:{settings.port}")
        snapshot.remove_partial_files(settings.data_dir)
        guard.check_at_start(settings.data_dir, full=settings.startup_check == "full")
        try:
            db.open()
        except sqlite3.DatabaseError as exc:  # damage the start-up check could not see
            guard.set_aside(settings.data_dir, f"it cannot be opened ({exc})")
            db.open()
        log.info("store: opened %s at LSN %d", db.path, db.last_lsn)
        try:
            await node.start()
            context.node_id = node.node_id
            if archiver is not None:
                await archiver.start(node.node_id)
            yield
            if not node.stopping:
                await node.leave()
        finally:
            if archiver is not None:
                await archiver.stop()
            await node.stop()
            db.close()
            lock.release()
            log.info("store: closed %s", db.path)

    app = FastAPI(
        title="Talent Nest",
        version=__version__,
        description="A talent network's API, served by every node of a replicated SQLite cluster.",
        lifespan=lifespan,
        # /docs is the node's own page (web/), with Swagger UI served from the package: FastAPI's
        # loads it from a CDN with an inline script, which the page's CSP refuses. No /redoc.
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.db = db
    app.state.node = node
    app.state.product = build_product(
        settings,
        db,
        sharing_nodes=node.members_alive,
        clock=runtime.clock,
        choose_token_key=lambda kids: keys.token_key_for(node, kids),
        new_token_key=lambda: f"{runtime.random.getrandbits(128):032x}",
    )
    node.token_keys = app.state.product.auth.tokens.accepted_kids

    def classify(exc: Exception) -> TalentNestError | None:
        failure = storage_failure(exc)
        if failure is not None:
            db.report_failure(failure)  # a read met a full disk or a damaged file: the node reacts
        return failure

    http_errors.install(app, classify=classify)
    # The product's routes go on the app's router itself, not through include_router: FastAPI serves an
    # included router as one entry whose routes are all matched twice per request, once to select it and
    # once inside it (benchmarks/README.md, issue 13). Same routes, same order, same schema.
    app.router.routes.extend(api.router.routes)

    @app.get("/healthz", operation_id="getHealth", tags=["operations"])
    async def healthz() -> dict:
        """Alive: the process answers."""
        return {"status": "ok", "node_id": node.node_id}

    @app.get("/readyz", operation_id="getReadiness", tags=["operations"], responses={503: {"description": "not ready"}})
    async def readyz() -> JSONResponse:
        """Ready to serve: synced with the leader, and a leader is known."""
        ready, reason = node.readiness()
        return JSONResponse({"ready": ready, "reason": reason, "node_id": node.node_id}, status_code=200 if ready else 503)

    registry = metrics.new_registry()
    app.state.metrics_registry = registry

    forwards = ForwardStats()
    registry.register(ClusterCollector(node, replication, forwards, version=__version__))
    if archiver is not None:
        registry.register(metrics.ArchiveCollector(archiver))
    request_stats = metrics.RequestStats()
    registry.register(request_stats)
    app.add_api_route(
        "/metrics",
        metrics.metrics_endpoint(registry),
        methods=["GET"],
        operation_id="getMetrics",
        tags=["operations"],
        summary="Metrics",
        description="This node's metrics in the Prometheus text format: HTTP requests, role, term, LSNs, "
        "replication lag and counters. Public; holds no secret.",
        response_class=PlainTextResponse,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus text"}},
    )
    # In the router too (a HEAD, an X-Min-LSN, a 405 take the full stack), but served ahead of it by
    # ClusterFront: so after the product's routes, which a request no longer tries them all before.
    cluster_routes = cluster_api.build_routes(node, replication, signatures)
    app.router.routes.extend(cluster_routes)
    app.router.routes.extend(web.routes())
    openapi_schema.install(app)
    tried_first(app.router.routes, BUSIEST)
    IndexedRouting.install(app.router)  # the routes are final: each request is matched against its group's
    app.add_middleware(
        ClusterMiddleware,
        coordinator=node.gate,
        db=db,
        is_write=write_classifier(api.router.routes),
        signatures=signatures,
        stats=forwards,
    )
    app.add_middleware(BodyLimit, timeout=settings.client_timeout)
    # Outermost: times every request, including those the layers below answer themselves.
    routes = [r for r in app.router.routes if isinstance(r, (Route, Mount))]
    app.add_middleware(metrics.HttpMetrics, stats=request_stats, routes=routes)
    # Ahead of everything: node-to-node calls, with their own body limit, signature check and metrics.
    app.add_middleware(
        ClusterFront,
        routes=cluster_routes,
        signatures=signatures,
        respond=Responder(node.gate, db),
        wall=node.gate.wall,
        record=request_stats.record,
        timeout=settings.client_timeout,
    )
    return app
