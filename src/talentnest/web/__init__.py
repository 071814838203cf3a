"""The node's pages: the cluster dashboard (``/``) and the API docs (``/docs``), with their static files
served as they are (no build step).

The dashboard polls ``cluster/status`` of the node that served it; ``/docs`` is Swagger UI (shipped
in ``static/swagger-ui/``, see its SOURCE.txt) over ``/openapi.json``. Neither loads anything from
elsewhere, which their Content-Security-Policy enforces.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).resolve().parent / "static"
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _page(filename: str):
    body = (STATIC_DIR / filename).read_bytes()

    async def page(request: Request) -> Response:
        return Response(body, media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)

    return page


def routes() -> list[BaseRoute]:
    """``GET /`` (the dashboard), ``GET /docs`` (the API docs) and ``/static/*`` (their scripts, styles, icons)."""
    return [
        Route("/", _page("index.html"), methods=["GET"]),
        Route("/docs", _page("docs.html"), methods=["GET"]),
        Mount("/static", app=StaticFiles(directory=STATIC_DIR), name="static"),
    ]
