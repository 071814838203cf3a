"""Helpers for API tests: a thin client that knows tokens, and assertions on errors and state."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.testclient import TestClient

from talentnest.config import Settings

JWT_SECRET = "test-secret-that-is-at-least-32-bytes-long"
ERROR_KEYS = {"code", "message"}
OPTIONAL_ERROR_KEYS = {"fields"}


def fast_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Settings for tests: a temp DATA_DIR and argon2 parameters that cost about a millisecond."""
    values: dict[str, Any] = dict(
        jwt_secret=JWT_SECRET,
        data_dir=data_dir,
        argon2_time_cost=1,
        argon2_memory_kib=1024,
        argon2_parallelism=1,
    )
    values.update(overrides)
    return Settings(**values)


@dataclass(frozen=True)
class Member:
    """A signed-up user as a test sees it: the token and the user object signup answered."""

    token: str
    user: dict[str, Any]

    @property
    def username(self) -> str:
        return self.user["username"]

    @property
    def id(self) -> int:
        return self.user["id"]

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.token)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """The response has ``status`` and the one error shape; returns the ``error`` object."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert ERROR_KEYS <= set(error) <= ERROR_KEYS | OPTIONAL_ERROR_KEYS, error
    assert isinstance(error["code"], str) and error["code"], error
    assert isinstance(error["message"], str) and error["message"], error
    if code is not None:
        assert error["code"] == code, error
    return error


def raw_json(data: str) -> dict[str, Any]:
    """Request kwargs that send ``data`` as the JSON body verbatim (for escapes json= would not make)."""
    return {"content": data.encode("utf-8"), "headers": {"Content-Type": "application/json"}}


class Api:
    """The product API through a TestClient, plus the node's database for state checks."""

    def __init__(self, client: TestClient, app: FastAPI):
        self.client = client
        self.app = app

    @property
    def db(self):
        return self.app.state.db

    def in_app(self, fn, *args: Any) -> Any:
        """Run ``fn`` on the app's event loop thread, where the node uses the database too (one
        SQLite connection must not be used from two threads at once)."""
        return self.client.portal.call(fn, *args)

    def sql(self, statement: str, *params: Any) -> list:
        """A read of the node's database, on its own thread."""
        return self.in_app(lambda: self.db.conn.execute(statement, params).fetchall())

    def write_sql(self, statement: str, *params: Any) -> None:
        """A write through the node's single write path, on its own thread."""

        def write() -> None:
            with self.db.write() as conn:
                conn.execute(statement, params)

        self.in_app(write)

    def signup(self, **body: Any) -> Member:
        response = self.client.post("/api/auth/signup", json=body)
        assert response.status_code == 201, response.text
        data = response.json()
        return Member(data["token"], data["user"])

    def state(self) -> tuple[str, int]:
        """What a refused request must not change: every replicated row, and the log position."""
        return self.in_app(lambda: (self.db.checksum(), self.db.last_lsn))

    @contextmanager
    def unchanged(self) -> Iterator[None]:
        """Assert that nothing inside the block changed any data (nor wrote a log entry)."""
        before = self.state()
        yield
        assert self.state() == before, "a refused request changed the database"

    def refused(self, method: str, url: str, status: int, code: str | None = None, **kwargs: Any) -> dict[str, Any]:
        """Send a request that must be refused with ``status``; assert the shape and no change."""
        with self.unchanged():
            response = self.client.request(method, url, **kwargs)
        return assert_error(response, status, code)

    def ok(self, method: str, url: str, status: int = 200, **kwargs: Any) -> Any:
        response = self.client.request(method, url, **kwargs)
        assert response.status_code == status, response.text
        return response.json() if response.content else None

    def all_pages(self, url: str, *, limit: int, **kwargs: Any) -> list[dict[str, Any]]:
        """Every item of a list, following next_cursor page by page; checks page sizes."""
        items, cursor, pages = [], None, 0
        params = dict(kwargs.pop("params", {}))
        while True:
            params["limit"] = limit
            if cursor is not None:
                params["cursor"] = cursor
            page = self.ok("GET", url, params=params, **kwargs)
            assert set(page) == {"items", "next_cursor"}, page
            assert len(page["items"]) <= limit
            items.extend(page["items"])
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                return items
            assert len(page["items"]) == limit, "a page before the last one must be full"
            assert pages < 1000, "pagination does not end"


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=True)
