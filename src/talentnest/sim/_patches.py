"""What the simulated processes take from the Python process itself, made to follow the simulation:
PyJWT's clock (it checks ``iat``/``exp`` against ``datetime.now()``, not the node's injected clock)
reads the wall clock of the node whose loop is running, and argon2's salts come from the run's seed.
Both are needed only because the core does not take them from its ``Runtime`` (docs/simulation.md).

Every SQLite connection is filed under the simulated process whose loop opened it (``opened_by``), so
that a crash closes them all, as the kernel closes a killed process's files: the writer's, the
readers', a snapshot's pinned image (one left open would hold the file against the next incarnation).

One more patch is for speed only: FastAPI builds the routes of an included router lazily, in every
app, on its first requests (about 10 ms a route); every simulated incarnation is a new app of the
same routes, so the built routes are shared between apps (they hold no per-app state here: the
product is read from ``request.app.state``, and no app overrides dependencies)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import sqlite3
import types
import weakref
from collections.abc import Iterator
from datetime import UTC, datetime

import argon2._password_hasher as _argon2_hasher
import fastapi.routing as _fastapi_routing
import jwt.api_jwt as _jwt


class _ProcessConnection(sqlite3.Connection):
    """A connection as any other; a subclass only so that a process's table of them can be weak."""


_opened: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # loop -> WeakSet of its connections


def opened_by(loop: asyncio.AbstractEventLoop) -> list[sqlite3.Connection]:
    """The connections the process of ``loop`` opened and still holds (open or closed)."""
    return list(_opened.get(loop, ()))


def _connect(original):
    def connect(*args, **kwargs):
        kwargs.setdefault("factory", _ProcessConnection)
        conn = original(*args, **kwargs)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return conn  # the simulator's own reads, outside any process
        _opened.setdefault(loop, weakref.WeakSet()).add(conn)
        return conn

    return connect


def _node_wall() -> float | None:
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    owner = getattr(loop, "owner", None)
    return None if owner is None else owner.clock.wall()


class _NodeDatetime(datetime):
    @classmethod
    def now(cls, tz=None):
        wall = _node_wall()
        if wall is None:
            return datetime.now(tz)
        return datetime.fromtimestamp(wall, tz or UTC)


def _shared(method_name: str):
    original = getattr(_fastapi_routing._IncludedRouter, method_name)
    built: dict = {}

    def shared(self):
        key = (id(self.original_router), self.original_router._get_routes_version(), self.include_context.prefix)
        routes = built.get(key)
        if routes is None:
            routes = built[key] = original(self)
        return routes

    return original, shared


_SHARED = (
    {name: _shared(name) for name in ("effective_candidates", "effective_low_priority_routes")}
    if hasattr(_fastapi_routing, "_IncludedRouter")
    else {}
)


def forget_apps() -> None:
    """FastAPI keeps a bounded cache of the endpoints it classified, per function: the endpoints
    ``create_app`` defines inside itself are new functions in every app, and would keep hundreds of
    finished runs alive. Clearing it between runs only costs a re-classification."""
    import fastapi.dependencies.models as models

    for value in vars(models).values():
        clear = getattr(value, "cache_clear", None)
        if callable(clear):
            clear()


@contextlib.contextmanager
def simulated_process(seed: int) -> Iterator[None]:
    entropy = random.Random(f"{seed}:entropy")
    saved_datetime, saved_os, saved_connect = _jwt.datetime, _argon2_hasher.os, sqlite3.connect
    _jwt.datetime = _NodeDatetime
    _argon2_hasher.os = types.SimpleNamespace(urandom=entropy.randbytes)
    sqlite3.connect = _connect(saved_connect)
    for name, (_, shared) in _SHARED.items():
        setattr(_fastapi_routing._IncludedRouter, name, shared)
    try:
        yield
    finally:
        _jwt.datetime, _argon2_hasher.os, sqlite3.connect = saved_datetime, saved_os, saved_connect
        for name, (original, _) in _SHARED.items():
            setattr(_fastapi_routing._IncludedRouter, name, original)
