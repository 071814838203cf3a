"""Which layer of a node a py-spy sample belongs to: rules over its stack, read from the innermost frame outwards.

A sample is py-spy's "raw" (collapsed) line: ``frame;frame;...;frame count``, outermost first, each
frame ``qualname (file:line)``. The innermost frame that a rule names decides the layer; frames no
rule names (the standard library's json and asyncio, pydantic, contextlib) are skipped, so that
their time counts for the layer that called them (``json.dumps`` under ``JSONResponse.render`` is
"JSON encoding", under ``LogEntry.from_dict`` it is the replicate path's re-serialisation). A stack
that no rule names is the event loop itself: uvloop, sockets and the kernel, which py-spy does not see.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

EVENT_LOOP = "event loop, sockets (uvloop, C)"

# (layer, pattern over "qualname@file"): the first rule that matches a frame names it.
RULES: list[tuple[str, str]] = [
    # Talent Nest's own layers
    ("metrics.HttpMetrics", r"^(HttpMetrics|RequestStats)\.|@talentnest/metrics\.py"),
    ("limits.GuardedHttpTools (head limits)", r"^GuardedHttpTools\."),
    ("limits.BodyLimit", r"@(talentnest/)?limits\.py"),
    ("cluster middleware: is_write (route matching)", r"^write_classifier"),
    ("forwarding hop (follower -> leader)", r"^ClusterMiddleware\.(_forward|_relay)"),
    ("cluster middleware", r"^ClusterMiddleware\.|@(talentnest/cluster/)?middleware\.py$"),
    ("node-to-node signatures (HMAC)", r"@talentnest/cluster/auth\.py"),
    ("node-to-node HTTP client (aiohttp, transport)", r"@(aiohttp|yarl|multidict)/|@talentnest/cluster/transport\.py"),
    ("replicate: JSON parse of the body", r"^decode@.*wire\.py"),
    ("replicate: LogEntry.from_dict (re-dumps each change)", r"^LogEntry\.from_dict"),
    ("replicate: message checks", r"@.*cluster/wire\.py"),
    ("follower: apply (SQLite)", r"^Database\.(apply|_apply)"),
    ("follower: on_replicate", r"@talentnest/cluster/follower\.py"),
    ("cluster endpoints (/cluster/*)", r"^build_routes\.|@talentnest/cluster/api\.py"),
    ("leader: stream, batches, acks", r"@talentnest/cluster/(stream|leader|replication)\.py"),
    ("heartbeats, elections, membership, DNS (background)", r"@talentnest/cluster/|@dns/|@talentnest/launcher/"),
    ("token: account check (SQL)", r"^UserRepo\.exists"),
    ("token: JWT check (PyJWT)", r"^Tokens\.user_id|@jwt/"),
    ("store: write transaction, change capture, commit", r"^(Database|RequestTransaction)\.|@talentnest/store/_db\.py"),
    ("SQL of the product (store)", r"@talentnest/store/"),
    ("services (rules, render)", r"@talentnest/services/"),
    ("route functions, dependencies (talentnest/api)", r"@talentnest/api/"),
    ("logging", r"@logging/|@talentnest/logs\.py"),
    # The frameworks
    ("FastAPI: response_model validation + serialisation", r"^(serialize_response|_prepare_response_content)@"),
    ("FastAPI: jsonable_encoder", r"^jsonable_encoder@|@fastapi/encoders\.py"),
    ("FastAPI: request body parse + validation", r"^(request_body_to_args|_validate_value\w*|_get_multidict_value)@"),
    ("FastAPI: dependency solving", r"@fastapi/(dependencies|security)/"),
    ("JSON encoding of the answer (Starlette render)", r"^(ORJSON|JSON)Response\.render@"),
    ("Starlette: request object (body, headers)", r"@starlette/(requests|datastructures)\.py"),
    ("Starlette: response (headers, send)", r"@starlette/responses\.py"),
    (
        "FastAPI/Starlette built-in middleware (errors, exceptions, exit stack)",
        r"@starlette/middleware/|@starlette/_exception_handler\.py|@fastapi/(middleware|telemetry)/|@fastapi/_body_limit\.py",
    ),
    ("routing (route matching, dispatch)", r"(matches|_match|^Router\.\w+|^APIRouter\.\w+|^_IncludedRouter\.\w+)@.*routing\.py"),
    ("FastAPI: request handler (endpoint call)", r"@(fastapi|starlette)/(routing|applications)\.py"),
    ("Starlette app", r"@starlette/"),
    ("server: uvicorn + httptools (parse, write)", r"@(uvicorn|httptools|granian)/"),
    ("worker threads (asyncio.to_thread)", r"@concurrent/futures/thread\.py"),
]
_COMPILED = [(layer, re.compile(pattern)) for layer, pattern in RULES]
_LOOP_FRAME = re.compile(r"^(Runner\.run|run_until_complete|BaseEventLoop\.run_\w+) \(asyncio/")
_FRAME = re.compile(r"^(?P<name>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")


def frame_layer(frame: str) -> str | None:
    match = _FRAME.match(frame.strip())
    key = f"{match['name']}@{match['file']}" if match else frame
    for layer, pattern in _COMPILED:
        if pattern.search(key):
            return layer
    return None


IDLE = "idle thread (waiting for work)"
# A worker thread of a pool blocked on its queue: py-spy may count it, but it does no work.
_IDLE_LEAF = re.compile(r"^(_worker \(concurrent/futures/thread\.py|Thread\.run \(threading\.py|\S*wait\w* \(threading\.py)")


def sample_layer(stack: str) -> str:
    frames = stack.split(";")
    if frames and _IDLE_LEAF.search(frames[-1].strip()):
        return IDLE
    # The frames that run the event loop (runpy, the CLI, uvicorn's Server.run, asyncio's Runner.run)
    # are under every sample: only what runs above the loop names a layer.
    loop = max((i for i, frame in enumerate(frames) if _LOOP_FRAME.search(frame)), default=-1)
    for frame in reversed(frames[loop + 1 :]):
        layer = frame_layer(frame)
        if layer is not None:
            return layer
    return EVENT_LOOP


def parse_raw(lines: Iterable[str]) -> Counter[str]:
    """py-spy's raw output as a Counter of stacks."""
    stacks: Counter[str] = Counter()
    for line in lines:
        line = line.rstrip("\n")
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks[stack] += int(count)
    return stacks


def layers(stacks: Counter[str]) -> Counter[str]:
    """Samples per layer; idle threads' samples are left out (they are no CPU of the node's)."""
    out: Counter[str] = Counter()
    for stack, count in stacks.items():
        layer = sample_layer(stack)
        if layer != IDLE:
            out[layer] += count
    return out
