"""The layer rules of benchmarks/request_profile.py: each py-spy stack is given to the layer that spent it."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from _layers import EVENT_LOOP, IDLE, layers, parse_raw, sample_layer

LOOP = (
    "_run_module_as_main (<frozen runpy>:198);<module> (talentnest/__main__.py:5);run_node (talentnest/cli.py:153);"
    "Server.run (uvicorn/server.py:86);asyncio_run (uvicorn/_compat.py:30);Runner.run (asyncio/runners.py:118)"
)
REQUEST = (
    f"{LOOP};RequestResponseCycle.run_asgi (uvicorn/protocols/http/httptools_impl.py:422);"
    "FastAPI.__call__ (fastapi/applications.py:1224);ServerErrorMiddleware.__call__ (starlette/middleware/errors.py:164);"
    "HttpMetrics.__call__ (talentnest/metrics.py:133);BodyLimit.__call__ (talentnest/limits.py:124);"
    "ClusterMiddleware.__call__ (middleware.py:119);ClusterMiddleware._read (middleware.py:194)"
)


def test_only_what_runs_above_the_event_loop_names_a_layer():
    # uvicorn's Server.run is under every sample: a stack that stops at the loop is the loop's own work.
    assert sample_layer(LOOP) == EVENT_LOOP
    assert sample_layer(f"{LOOP};data_received (uvicorn/protocols/http/httptools_impl.py:170)").startswith("server:")


def test_the_innermost_named_frame_decides_and_unnamed_frames_count_for_their_caller():
    json_under_render = f"{REQUEST};JSONResponse.render (starlette/responses.py:190);dumps (json/__init__.py:238)"
    assert sample_layer(json_under_render) == "JSON encoding of the answer (Starlette render)"
    redump = (
        f"{REQUEST};replicate (talentnest/cluster/api.py:101);parse (talentnest/cluster/wire.py:260);"
        "LogEntry.from_dict (talentnest/store/_db.py:117);dumps (json/__init__.py:238);encode (json/encoder.py:200)"
    )
    assert sample_layer(redump) == "replicate: LogEntry.from_dict (re-dumps each change)"
    parse = f"{REQUEST};replicate (talentnest/cluster/api.py:101);decode (talentnest/cluster/wire.py:96);loads (json/x.py:3)"
    assert sample_layer(parse) == "replicate: JSON parse of the body"
    assert sample_layer(f"{REQUEST};_is_signed (middleware.py:290)") == "cluster middleware"


def test_the_token_checks_are_told_apart():
    check = f"{REQUEST};current_user (talentnest/api/deps.py:40);authenticate (talentnest/services/auth.py:165)"
    assert sample_layer(f"{check};UserRepo.exists (talentnest/store/users.py:30)") == "token: account check (SQL)"
    jwt = f"{check};Tokens.user_id (talentnest/services/auth.py:70);decode (jwt/api_jwt.py:210)"
    assert sample_layer(jwt) == "token: JWT check (PyJWT)"


def test_raw_lines_are_counted_per_stack_and_per_layer():
    raw = [f"{LOOP} 7\n", f"{REQUEST} 3\n", f"{REQUEST} 2\n", "not a sample\n"]
    stacks = parse_raw(raw)
    assert stacks == {LOOP: 7, REQUEST: 5}
    assert layers(stacks) == {EVENT_LOOP: 7, "cluster middleware": 5}


def test_a_pool_thread_waiting_for_work_is_idle_and_left_out():
    waiting = (
        "Thread._bootstrap (threading.py:1002);Thread._bootstrap_inner (threading.py:1045);Thread.run (threading.py:982);"
        "_worker (concurrent/futures/thread.py:81)"
    )
    working = f"{waiting};verify (argon2/_password_hasher.py:240)"
    assert sample_layer(waiting) == IDLE
    assert sample_layer(working) == "worker threads (asyncio.to_thread)"
    assert layers(parse_raw([f"{waiting} 9", f"{working} 1", f"{LOOP} 2"])) == {
        "worker threads (asyncio.to_thread)": 1,
        EVENT_LOOP: 2,
    }
