#!/usr/bin/env python3
"""A bare FastAPI app doing only the essential work of Talent Nest's post requests: the yardstick of peers.py.

``GET /api/posts/{id}``: the product's own select by key (``store.posts.POST_SELECT``) and JSON.
``POST /api/posts``: a pydantic body, a PyJWT check of the bearer token (the node's claims and
options), one INSERT (its own transaction) and JSON. No middleware, no response_model, no account
check, no replication. It runs on the same server as a node: uvicorn with uvloop and httptools.

Configured by the environment: ``BARE_DB`` (a SQLite file with the product's schema),
``BARE_SECRET`` (the HS256 key), ``BARE_HOST``, ``BARE_PORT``; ``BARE_READS=thread`` runs each
read's SQL in a worker thread with a connection of its own (the thread hop a reader pool costs);
``BARE_JSON=orjson`` answers with orjson (a candidate of benchmarks/candidates.py).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import jwt  # noqa: E402
import uvicorn  # noqa: E402
from fastapi import FastAPI, Header  # noqa: E402
from fastapi.responses import JSONResponse, Response  # noqa: E402
from pydantic import BaseModel, ConfigDict, Field  # noqa: E402

from talentnest.store._time import iso_from_epoch  # noqa: E402
from talentnest.store.posts import POST_SELECT  # noqa: E402

DB = os.environ.get("BARE_DB", "bare.db")
SECRET = os.environ.get("BARE_SECRET", "bare-secret")
READS_IN_THREAD = os.environ.get("BARE_READS") == "thread"
USE_ORJSON = os.environ.get("BARE_JSON") == "orjson"
ISSUER = "talentnest"


def connect() -> sqlite3.Connection:
    conn = sqlite3.connect(DB, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


conn = connect()
local = threading.local()
pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="bare-reader")


def thread_conn() -> sqlite3.Connection:
    if not hasattr(local, "conn"):
        local.conn = connect()
    return local.conn


class PostIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    content: str = Field(min_length=1, max_length=5000)


def select(db: sqlite3.Connection, post_id: int):
    return db.execute(f"{POST_SELECT} WHERE p.id = ?", (0, post_id)).fetchone()


def render(row) -> dict:
    return {
        "id": row[0],
        "author": {"id": row[4], "username": row[5], "name": row[6], "headline": row[7]},
        "content": row[1],
        "like_count": row[8],
        "comment_count": row[9],
        "created_at": row[2],
        "updated_at": row[3],
    }


def answer(payload: dict, status: int = 200) -> dict | Response:
    """The payload as FastAPI serialises a returned dict (jsonable_encoder, json.dumps), or prebuilt with orjson."""
    if USE_ORJSON:
        import orjson

        return Response(orjson.dumps(payload), status_code=status, media_type="application/json")
    return payload


app = FastAPI()


@app.get("/healthz")
async def healthz() -> dict:
    return {"status": "ok"}


@app.get("/api/posts/{post_id}")
async def get_post(post_id: int):
    if READS_IN_THREAD:
        row = await asyncio.get_running_loop().run_in_executor(pool, lambda: select(thread_conn(), post_id))
    else:
        row = select(conn, post_id)
    if row is None:
        return JSONResponse({"error": {"code": "post_not_found", "message": f"no post {post_id}"}}, status_code=404)
    return answer(render(row))


@app.post("/api/posts", status_code=201)
async def create_post(body: PostIn, authorization: str = Header(default="")):
    token = authorization.partition(" ")[2]
    try:
        claims = jwt.decode(
            token,
            SECRET,
            algorithms=["HS256"],
            issuer=ISSUER,
            options={"require": ["exp", "iat", "sub", "iss"]},
            leeway=5,
        )
    except jwt.PyJWTError:
        return JSONResponse({"error": {"code": "invalid_token", "message": "token is not valid"}}, status_code=401)
    author = int(claims["sub"])
    now = iso_from_epoch(time.time())
    cursor = conn.execute(
        "INSERT INTO posts(author_id, content, created_at, updated_at) VALUES (?, ?, ?, ?)", (author, body.content, now, now)
    )
    payload = {"id": cursor.lastrowid, "author_id": author, "content": body.content, "created_at": now, "updated_at": now}
    return answer(payload, 201)


if __name__ == "__main__":
    uvicorn.run(
        app,
        host=os.environ.get("BARE_HOST", "127.0.0.1"),
        port=int(os.environ.get("BARE_PORT", "8000")),
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
        server_header=False,
    )
