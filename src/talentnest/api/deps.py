"""Dependencies shared by the product routes: the services and the caller's identity."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from fastapi import Request
from fastapi.routing import APIRoute
from fastapi.security import HTTPBearer

from talentnest.errors import Unauthorized
from talentnest.services import AuthService, PostService, UserService
from talentnest.services.exports import ExportService
from talentnest.services.throttle import WriteLimiter

T = TypeVar("T")


class Reads(Protocol):
    """Runs a function that only reads the database off the event loop, and awaits its result
    (``Database.read``); the function's own exceptions come back as they were raised."""

    def __call__(self, fn: Callable[..., T], *args: Any) -> Awaitable[T]: ...


@dataclass(frozen=True)
class Product:
    """The product's services, built by ``app.py`` and kept on ``app.state.product``.

    A route that only reads runs its service call through ``read`` (a reader thread with its own
    connection), so that a slow read delays no other request; writes, and the reads inside them,
    stay on the event loop with the single writer, and so does a read of a post by its key, which
    costs less than the hop to a reader thread (``routes.get_post``).
    """

    auth: AuthService
    users: UserService
    posts: PostService
    exports: ExportService
    write_limits: WriteLimiter
    read: Reads


# These are ``async def`` on purpose: FastAPI runs a plain ``def`` dependency in a worker thread,
# and the store's writer connection belongs to the event loop's thread. Two threads on one SQLite
# connection deadlock under load (one holds SQLite's mutex and waits for the GIL, the other the
# reverse): the node froze after about 80 concurrent authenticated requests. Reads off the loop
# go through ``Product.read``, whose threads each have a connection of their own.


def product_of(request: Request) -> Product:
    """The product's services, taken from the request by the routes themselves rather than through a
    dependency: FastAPI solves every dependency of a route on every request, and ``Depends(product)``
    cost each route about 7 us (benchmarks/README.md, issue 13)."""
    return request.app.state.product


# The identity dependencies read the token from the request themselves, with nothing beneath them:
# FastAPI solves every dependency of a route on every request, and each level costs (one less made a
# ``POST /api/posts`` 17-36 us cheaper, and taking ``Depends(BEARER)`` away too another 5-7 us:
# benchmarks/README.md, issue 13). The schema still says which routes take the token:
# ``openapi.describe_bearer`` gives ``BEARER``'s security scheme to every route that depends on one of these.

BEARER = HTTPBearer(auto_error=False, description="the token from signup or login")


def bearer_token(request: Request) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (the scheme in any case), as FastAPI's
    ``HTTPBearer(auto_error=False)`` reads it; None without one."""
    authorization = request.headers.get("authorization")
    if not authorization:
        return None
    scheme, _, credentials = authorization.partition(" ")
    credentials = credentials.strip()
    if not scheme or not credentials or scheme.lower() != "bearer":
        return None
    return credentials


def _authenticated(request: Request, token: str | None) -> int:
    if token is None:
        raise Unauthorized("this needs a bearer token (Authorization: Bearer <token>)", code="missing_token")
    return request.app.state.product.auth.authenticate(token)


async def current_user(request: Request) -> int:
    """The id of the user whose bearer token came with the request; 401 without one."""
    return _authenticated(request, bearer_token(request))


async def optional_user(request: Request) -> int | None:
    """The caller's id when a token is sent (a bad token is still refused), else None."""
    token = bearer_token(request)
    return None if token is None else _authenticated(request, token)


def client_address(request: Request) -> str | None:
    """The caller's address (a peer's signed ``X-Forwarded-For`` on a forwarded request: cluster/middleware.py)."""
    return request.client.host if request.client else None


async def limited_writer(request: Request) -> int:
    """The caller's id, once the write limits of their account and address admit one more write (429 if not)."""
    user = _authenticated(request, bearer_token(request))
    request.app.state.product.write_limits.admit(user, client_address(request))
    return user


IDENTITY = (current_user, optional_user, limited_writer)


def takes_token(route: APIRoute) -> bool:
    """The route depends on one of ``IDENTITY``: it reads the caller's bearer token."""
    return any(dependency.call in IDENTITY for dependency in route.dependant.dependencies)
