"""Node-to-node authentication: ``X-Cluster-Signature`` (DESIGN.md, "Node-to-node authentication").

``t=<unix seconds>,s=<hex HMAC-SHA256(key, "<t>\\n<METHOD>\\n<path and query>\\n<hex SHA-256 of body>")>``
with the key the UTF-8 bytes of ``CLUSTER_SECRET`` or, when it is unset, the 32 raw bytes of
``HMAC-SHA256(key=JWT_SECRET, msg="talentnest-cluster")``. A signature more than 30 s away
from this node's clock is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time

from talentnest.config import MAX_CLOCK_SKEW_SECONDS

HEADER = "X-Cluster-Signature"
MAX_SKEW_SECONDS = MAX_CLOCK_SKEW_SECONDS
_FORMAT = re.compile(r"^t=(\d{1,12}),s=([0-9a-f]{64})$")


class SignatureError(Exception):
    """The signature is missing, malformed, wrong or stale; the message says which (no secrets)."""


def cluster_key(*, jwt_secret: str, cluster_secret: str | None) -> bytes:
    if cluster_secret:
        return cluster_secret.encode()
    return hmac.new(jwt_secret.encode(), b"talentnest-cluster", hashlib.sha256).digest()


def _message(t: int, method: str, target: str, body: bytes) -> bytes:
    return f"{t}\n{method.upper()}\n{target}\n{hashlib.sha256(body).hexdigest()}".encode()


def sign(key: bytes, method: str, target: str, body: bytes = b"", *, now: float | None = None) -> str:
    """The header value for a request; ``target`` is the path with its query string."""
    t = int(time.time() if now is None else now)
    digest = hmac.new(key, _message(t, method, target, body), hashlib.sha256).hexdigest()
    return f"t={t},s={digest}"


def verify(key: bytes, header: str | None, method: str, target: str, body: bytes = b"", *, now: float | None = None) -> None:
    """Return if the signature is good; raise SignatureError otherwise."""
    if not header:
        raise SignatureError(f"missing {HEADER}")
    match = _FORMAT.match(header.strip())
    if match is None:
        raise SignatureError(f"malformed {HEADER}")
    t = int(match.group(1))
    current = time.time() if now is None else now
    if abs(current - t) > MAX_SKEW_SECONDS:
        raise SignatureError(f"{HEADER} is {int(current - t)} s away from this node's clock (limit {MAX_SKEW_SECONDS} s)")
    expected = hmac.new(key, _message(t, method, target, body), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, match.group(2)):
        raise SignatureError(f"wrong {HEADER}")
