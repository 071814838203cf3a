"""The one place errors become HTTP: status codes and the single JSON error shape."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import BaseRoute, Match
from starlette.types import Scope

from talentnest import errors

log = logging.getLogger("talentnest.http")

STATUS: dict[type[errors.TalentNestError], int] = {
    errors.InvalidInput: 422,
    errors.Unauthorized: 401,
    errors.Forbidden: 403,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.TooManyRequests: 429,
    errors.NotLeader: 503,
    errors.NoLeader: 503,
    errors.NotReady: 503,
    errors.StaleTerm: 409,
    errors.LogDiverged: 409,
    errors.LogTruncated: 410,
    errors.SnapshotError: 422,
    errors.PeerUnreachable: 503,
    errors.ClusterError: 503,
}
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_input",
    429: "too_many_requests",
    500: "internal_error",
    503: "unavailable",
}


MALFORMED_JSON = "the request body is not valid JSON"
_FASTAPI_BODY_ERROR = "There was an error parsing the body"


def status_of(error: errors.TalentNestError) -> int:
    for cls in type(error).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def error_body(code: str, message: str, **extra: Any) -> bytes:
    body: dict[str, Any] = {"code": code, "message": message}
    body.update(extra)
    # Messages may quote client input, which can hold lone surrogates: never fail on them.
    return json.dumps({"error": body}, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "replace")


def error_response(status: int, code: str, message: str, *, headers: dict[str, str] | None = None, **extra: Any) -> Response:
    return Response(error_body(code, message, **extra), status_code=status, headers=headers, media_type="application/json")


def respond_to(error: errors.TalentNestError) -> Response:
    status = status_of(error)
    headers = {}
    if isinstance(error, errors.TooManyRequests):
        headers["Retry-After"] = str(error.retry_after)
    elif status == 503:
        headers["Retry-After"] = "1"
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return error_response(status, error.code, error.message, headers=headers)


def _field_errors(exc: RequestValidationError) -> list[dict[str, str]]:
    fields = []
    for item in exc.errors():
        location = [str(part) for part in item.get("loc", ()) if part not in ("body",)]
        message = str(item.get("msg", "invalid"))
        if message.startswith("Value error, "):
            message = message[len("Value error, ") :]
        fields.append({"field": ".".join(location) or "body", "message": message})
    return fields


def _is_json(content_type: str | None) -> bool:
    media_type = (content_type or "application/json").split(";", 1)[0].strip().lower()
    return media_type == "application/json" or media_type.endswith("+json")


def allowed_methods(routes: Iterable[BaseRoute], scope: Scope) -> list[str]:
    """Every method some route serves at the scope's path (the path matched, the method did not)."""
    methods: set[str] = set()
    for route in routes:
        nested = getattr(route, "original_router", None)  # a router included into the app
        if nested is not None:
            methods.update(allowed_methods(nested.routes, scope))
            continue
        match, _ = route.matches({**scope, "method": ""})
        if match is Match.PARTIAL:
            methods.update(getattr(route, "methods", None) or ())
    return sorted(methods)


def install(app: FastAPI, *, classify: Callable[[Exception], errors.TalentNestError | None] = lambda exc: None) -> None:
    """Register the handlers that give every error the same shape. ``classify`` may turn an unexpected
    exception into a known error (a storage failure becomes a 503), instead of a 500."""

    @app.exception_handler(errors.TalentNestError)
    async def _product(request: Request, exc: errors.TalentNestError) -> Response:
        return respond_to(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        if any(item.get("type") == "json_invalid" for item in exc.errors()):
            return error_response(400, "malformed_json", MALFORMED_JSON)
        body_refused = any(item.get("loc", ())[:1] == ("body",) for item in exc.errors())
        if body_refused and not _is_json(request.headers.get("content-type")):
            # FastAPI reads only JSON bodies; say so instead of "body: Input should be a valid dictionary".
            return error_response(415, "unsupported_media_type", "send the body as JSON, with Content-Type: application/json")
        fields = _field_errors(exc)
        summary = "; ".join(f"{f['field']}: {f['message']}" for f in fields[:3])
        return error_response(422, "invalid_input", summary or "invalid input", fields=fields)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        code = _HTTP_CODES.get(exc.status_code, "error")
        message = exc.detail if isinstance(exc.detail, str) else code
        if exc.status_code == 400 and message == _FASTAPI_BODY_ERROR:
            # Raised for a body the JSON decoder could not even read (bad UTF-8, nesting too deep).
            code, message = "malformed_json", MALFORMED_JSON
        headers = getattr(exc, "headers", None)
        if exc.status_code == 404 and message == "Not Found":
            message = f"no route {request.method} {request.url.path}"
        if exc.status_code == 405:
            # Starlette names only the methods of the first route whose path matched; a path such
            # as /api/posts/{id} has one route per method, and Allow must name them all.
            allowed = allowed_methods(request.app.router.routes, request.scope)
            if allowed:
                headers = {**(headers or {}), "Allow": ", ".join(allowed)}
                message = f"{request.method} is not allowed on {request.url.path}; use {', '.join(allowed)}"
        return error_response(exc.status_code, code, message, headers=headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        known = classify(exc)
        if known is not None:
            log.warning("%s %s failed: %s", request.method, request.url.path, known)
            return respond_to(known)
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", "an unexpected error happened; it was logged")
