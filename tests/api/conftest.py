"""Fixtures for driving the real ASGI app: a fresh SQLite file per test, fast password hashing."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from talentnest.app import create_app
from talentnest.config import Settings
from tests.api._helpers import JWT_SECRET, Api, Member


def fast_settings(data_dir: Path, **overrides) -> Settings:
    """Settings for tests: a temp DATA_DIR and argon2 parameters that cost about a millisecond."""
    values = dict(
        jwt_secret=JWT_SECRET,
        data_dir=data_dir,
        argon2_time_cost=1,
        argon2_memory_kib=1024,
        argon2_parallelism=1,
    )
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def app(tmp_path: Path) -> FastAPI:
    return create_app(fast_settings(tmp_path / "data"))


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    # As a context manager, so the lifespan runs and opens the real SQLite file.
    with TestClient(app) as test_client:
        yield test_client


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
