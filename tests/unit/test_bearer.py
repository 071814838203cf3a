"""api.deps.bearer_token reads an Authorization header exactly as FastAPI's HTTPBearer(auto_error=False) does."""

from __future__ import annotations

import asyncio

from fastapi.security import HTTPBearer
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.requests import Request

from talentnest.api.deps import bearer_token

_REFERENCE = HTTPBearer(auto_error=False)
_PIECES = ["Bearer", "bearer", "BEARER", "Basic", "Token", " ", "  ", "\t", "abc.def.ghi", "x", ""]


def _request(value: str | None) -> Request:
    headers = [] if value is None else [(b"authorization", value.encode("latin-1"))]
    return Request({"type": "http", "method": "GET", "path": "/", "headers": headers, "query_string": b""})


def _reference(value: str | None) -> str | None:
    credentials = asyncio.run(_REFERENCE(_request(value)))
    return None if credentials is None else credentials.credentials


@settings(max_examples=400, deadline=None)
@given(value=st.one_of(st.none(), st.lists(st.sampled_from(_PIECES), max_size=5).map("".join), st.text(max_size=12)))
def test_bearer_token_reads_the_header_as_fastapis_http_bearer(value):
    value = None if value is None else value.encode("latin-1", "replace").decode("latin-1")
    assert bearer_token(_request(value)) == _reference(value)


def test_the_usual_headers():
    assert bearer_token(_request("Bearer abc")) == "abc"
    assert bearer_token(_request("bEaReR abc ")) == "abc"
    assert bearer_token(_request("Basic abc")) is None
    assert bearer_token(_request("Bearer")) is None
    assert bearer_token(_request(None)) is None
