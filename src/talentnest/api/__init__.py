"""The product's HTTP API: routes and request/response models. Talks to services only."""

from talentnest.api._marks import WRITE_FLAG, route_writes, writes
from talentnest.api.deps import BEARER, Product, takes_token
from talentnest.api.routes import router

__all__ = ["BEARER", "WRITE_FLAG", "Product", "route_writes", "router", "takes_token", "writes"]
