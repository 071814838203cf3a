"""Fixtures for driving the real ASGI app: a fresh SQLite file per test, fast password hashing.

One app (and one TestClient, entered so the lifespan runs) serves the whole session: FastAPI
builds its routes' dependency graphs on an app's first request, which costs more than most tests.
Before each test the app's database file is deleted and opened again, empty.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from talentnest.app import create_app
from talentnest.services.throttle import LoginThrottle, WriteLimiter
from talentnest.store import DB_FILENAME
from tests.api._helpers import Api, Member, fast_settings


@pytest.fixture(scope="session")
def _node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FastAPI, TestClient]]:
    app = create_app(fast_settings(tmp_path_factory.mktemp("node") / "data"))
    # As a context manager, so the lifespan runs and opens the real SQLite file.
    with TestClient(app) as test_client:
        app.state.pristine_product = app.state.product
        yield app, test_client


@pytest.fixture
def app(_node: tuple[FastAPI, TestClient]) -> FastAPI:
    """The app, with an empty database of its own for this test."""
    app, client = _node
    db = app.state.db

    def reset() -> None:
        db.close()
        for path in Path(db.data_dir).glob(f"{DB_FILENAME}*"):
            path.unlink()
        db.open()

    # On the app's own event loop thread: the node's loop uses the connection there too, and a
    # connection closed under it from another thread crashes the process.
    client.portal.call(reset)
    assert db.last_lsn == 0
    # Failed logins of earlier tests must not throttle this one's.
    auth = app.state.product.auth
    auth.throttle = LoginThrottle(auth.throttle.policy)
    # Nor their writes count against this one's write limits; and a test's own services are undone.
    pristine = app.state.pristine_product
    app.state.product = dataclasses.replace(pristine, write_limits=WriteLimiter(pristine.write_limits.policy))
    return app


@pytest.fixture
def client(app: FastAPI, _node: tuple[FastAPI, TestClient]) -> TestClient:
    return _node[1]


@pytest.fixture
def api(client: TestClient, app: FastAPI) -> Api:
    return Api(client, app)


@pytest.fixture
def make_member(api: Api) -> Callable[..., Member]:
    """Factory: sign up a new user (unique defaults) and return its token and public data."""
    numbers = itertools.count(1)

    def make(username: str | None = None, **fields) -> Member:
        n = next(numbers)
        username = username or f"member{n}"
        return api.signup(
            name=fields.pop("name", f"Member {n}"),
            username=username,
            email=fields.pop("email", f"{username.lower()}@example.com"),
            password=fields.pop("password", "pass123"),
        )

    return make
