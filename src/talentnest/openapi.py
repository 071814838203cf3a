"""The node's OpenAPI schema: the product's routes as FastAPI describes them, plus the cluster's client contract.

The headers every node adds and reads (DESIGN.md section 1, "Headers every node adds") are the
cluster middleware's, not the product's, so they are described here, on the routes where they
apply: ``X-Node-Id``, ``X-Node-Role`` and ``X-Cluster-LSN`` on every answer; ``X-Min-LSN`` on the
product's reads; ``Idempotency-Key`` on its writes, with ``X-Leader-Id`` and ``Idempotent-Replayed``
on their answers; ``Retry-After`` on the 503s and 429s a client may retry.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from talentnest.api import BEARER, WRITE_FLAG, takes_token
from talentnest.cluster.middleware import MIN_LSN_WAIT

MAX_LSN = 2**63 - 1
_ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}}

PARAMETERS = {
    "MinLSN": {
        "name": "X-Min-LSN",
        "in": "header",
        "required": False,
        "schema": {"type": "integer", "minimum": 0, "maximum": MAX_LSN},
        "description": (
            "Read your writes on any node: the X-Cluster-LSN of an earlier answer. The node waits (at most "
            f"{MIN_LSN_WAIT:g} s) until it has applied that LSN before it answers; if it cannot, 503 "
            "`lsn_not_reached` with Retry-After."
        ),
    },
    "IdempotencyKey": {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        "schema": {"type": "string", "minLength": 1, "maxLength": 200},
        "description": (
            "Makes a retry safe (after a timeout or a failover): a second request with the same key, from the "
            "same caller (token), with the same method, path and body, is not applied again; it gets the first "
            "answer, marked `Idempotent-Replayed: true`. The same key with another method, path or body is refused "
            "(422 `idempotency_key_reused`) and changes nothing. Keys are kept 24 h."
        ),
    },
}

HEADERS = {
    "X-Node-Id": {"description": "The ID of the node that answered.", "schema": {"type": "integer"}},
    "X-Node-Role": {
        "description": "That node's role when it answered.",
        "schema": {"type": "string", "enum": ["leader", "follower", "candidate"]},
    },
    "X-Cluster-LSN": {
        "description": "The LSN that node has applied; on a write, the LSN of that write (send it back as X-Min-LSN).",
        "schema": {"type": "integer", "minimum": 0},
    },
    "X-Leader-Id": {
        "description": "On a write a follower forwarded: the ID of the leader that applied it.",
        "schema": {"type": "integer"},
    },
    "Idempotent-Replayed": {
        "description": "`true` when this is the kept answer of an earlier request with the same Idempotency-Key.",
        "schema": {"type": "string", "enum": ["true"]},
    },
    "Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer", "minimum": 0}},
}
NODE_HEADERS = ("X-Node-Id", "X-Node-Role", "X-Cluster-LSN")
WRITE_HEADERS = ("X-Leader-Id", "Idempotent-Replayed")

READ_503 = "The node has not applied X-Min-LSN within the wait (`lsn_not_reached`): retry, or read from the leader."
WRITE_503 = (
    "No leader reachable (`no_leader`), the leader did not answer (`leader_unreachable`: retry with the same "
    "Idempotency-Key), leadership moved (`not_leader`), or, in quorum mode, no majority acknowledged the write "
    "in time (`not_acknowledged`)."
)
READ_400 = "X-Min-LSN is not a whole number (`invalid_input`)."
WRITE_400 = "Idempotency-Key is not 1-200 characters (`invalid_input`)."
WRITE_409 = "A request with this Idempotency-Key was applied but its answer was not kept (`idempotency_key_used`)."
WRITE_422 = (
    "This Idempotency-Key was already used by the same caller for another request (another method, path or "
    "body): nothing was applied (`idempotency_key_reused`)."
)


def _ref(kind: str, name: str) -> dict[str, str]:
    return {"$ref": f"#/components/{kind}/{name}"}


def _header_ref(name: str) -> dict[str, str]:
    return _ref("headers", name)


def _add_response(responses: dict, status: str, description: str, *, retry: bool = False) -> None:
    """Add ``status`` or, if the route already answers it, extend its description."""
    response = responses.get(status)
    if response is None:
        responses[status] = response = {"description": description, "content": _ERROR}
    elif description not in response.get("description", ""):
        response["description"] = f"{response.get('description', '').rstrip('.')}. {description}".lstrip(". ")
    if retry:
        response.setdefault("headers", {})["Retry-After"] = _header_ref("Retry-After")


def describe_bearer(schema: dict[str, Any], routes: list[BaseRoute]) -> dict[str, Any]:
    """Give ``api.BEARER``'s security scheme to every operation of a route that reads the caller's token
    (``api.takes_token``), as FastAPI would had the route depended on the scheme itself (which the identity
    dependencies no longer do, to be cheaper: ``api/deps.py``); in place; returns it."""
    name = BEARER.scheme_name
    paths = schema.get("paths", {})
    secured = False
    for route in routes:
        if not isinstance(route, APIRoute) or not takes_token(route) or route.path_format not in paths:
            continue
        for method in route.methods:
            operation = paths[route.path_format].get(method.lower())
            if operation is None:
                continue
            secured = True
            # A route's own requirements (``routes.token_optional``) come after, as FastAPI merges them.
            operation["security"] = [{name: []}, *operation.get("security", [])]
    if secured:
        schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
        schemes[name] = BEARER.model.model_dump(mode="json", by_alias=True, exclude_none=True)
    return schema


def describe_cluster_contract(schema: dict[str, Any]) -> dict[str, Any]:
    """Add the cluster's headers to ``schema`` (FastAPI's OpenAPI document), in place; returns it."""
    components = schema.setdefault("components", {})
    components.setdefault("parameters", {}).update(PARAMETERS)
    components.setdefault("headers", {}).update(HEADERS)
    for path, item in schema.get("paths", {}).items():
        for operation in item.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            is_write = bool(operation.get(WRITE_FLAG))
            responses = operation["responses"]
            if path.startswith("/api/"):
                parameter = "IdempotencyKey" if is_write else "MinLSN"
                operation.setdefault("parameters", []).append(_ref("parameters", parameter))
                _add_response(responses, "400", WRITE_400 if is_write else READ_400)
                _add_response(responses, "503", WRITE_503 if is_write else READ_503, retry=True)
                if is_write:
                    _add_response(responses, "409", WRITE_409)
                    _add_response(responses, "422", WRITE_422)
            if "429" in responses:
                responses["429"].setdefault("headers", {})["Retry-After"] = _header_ref("Retry-After")
            for status, response in responses.items():
                headers = response.setdefault("headers", {})
                for name in NODE_HEADERS:
                    headers[name] = _header_ref(name)
                if is_write and status.startswith("2"):
                    for name in WRITE_HEADERS:
                        headers[name] = _header_ref(name)
    return schema


def install(app: FastAPI) -> None:
    """Make ``app.openapi()`` (and so /openapi.json and /docs) carry the cluster's contract.

    Its paths keep the order in which the routes were declared when this is called, whatever order the
    router tries them in afterwards (``app.py`` puts the busiest first)."""
    generate = app.openapi
    declared = list(dict.fromkeys(path for route in app.routes if isinstance(path := getattr(route, "path", None), str)))

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = describe_cluster_contract(describe_bearer(generate(), app.routes))
            paths = schema.get("paths", {})
            schema["paths"] = {path: paths[path] for path in dict.fromkeys([*declared, *paths]) if path in paths}
        return app.openapi_schema

    app.openapi = openapi
