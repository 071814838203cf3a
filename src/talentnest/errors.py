"""The one error hierarchy: product errors and cluster errors, each with a stable code.

Lower layers raise these; the HTTP layer maps them to a status in one place
(``talentnest.http_errors``). Nothing here knows about HTTP.
"""

from __future__ import annotations


class TalentNestError(Exception):
    """Base of every error we raise on purpose. ``code`` is stable and machine-readable."""

    code = "error"

    def __init__(self, message: str, *, code: str | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


# --- product errors -------------------------------------------------------------------------


class ProductError(TalentNestError):
    """A request the product refuses; nothing was changed."""


class InvalidInput(ProductError):
    """A field is missing, malformed or out of range."""

    code = "invalid_input"


class Unauthorized(ProductError):
    """No token, a bad or expired token, or wrong credentials."""

    code = "unauthorized"


class Forbidden(ProductError):
    """Authenticated, but not allowed to touch this resource (someone else's post)."""

    code = "forbidden"


class NotFound(ProductError):
    """No such user, post or comment."""

    code = "not_found"


class Conflict(ProductError):
    """The write collides with existing data (a taken username or email)."""

    code = "conflict"


class TooManyRequests(ProductError):
    """Throttled; retry after ``retry_after`` seconds."""

    code = "too_many_requests"

    def __init__(self, message: str, *, retry_after: int, code: str | None = None):
        super().__init__(message, code=code)
        self.retry_after = retry_after


# --- cluster errors -------------------------------------------------------------------------


class ClusterError(TalentNestError):
    """The cluster cannot serve this now; the client may retry (with the same Idempotency-Key)."""

    code = "cluster_unavailable"


class NotLeader(ClusterError):
    """A write reached a node that does not lead; the caller forwards it or answers 503."""

    code = "not_leader"


class NoLeader(ClusterError):
    """No leader is known or reachable; writes are refused until one is elected."""

    code = "no_leader"


class WriterBusy(ClusterError):
    """The single writer is inside another request's transaction (a write route that awaited with its
    transaction open); retry in a moment."""

    code = "writer_busy"


class StorageFailure(ClusterError):
    """This node's disk or database file failed (full, I/O error, damaged); nothing was changed.
    ``damaged`` says the file itself is corrupt (it must be set aside and resynced)."""

    code = "storage_failure"

    def __init__(self, message: str, *, damaged: bool = False, code: str | None = None):
        super().__init__(message, code=code)
        self.damaged = damaged


class StaleTerm(ClusterError):
    """A message from an older term; the sender must step down and catch up."""

    code = "stale_term"


class PeerUnreachable(ClusterError):
    """A peer did not answer in time."""

    code = "peer_unreachable"


class SnapshotError(ClusterError):
    """A snapshot is corrupt, truncated or incompatible; the existing database was left intact."""

    code = "snapshot_invalid"


class LogTruncated(ClusterError):
    """The entries asked for are older than the retained log; the caller must install a snapshot."""

    code = "log_truncated"


class LogDiverged(ClusterError):
    """This node's log holds entries the leader's never had (same LSN, another term).

    The caller archives them (``talentnest.store.divergence``) and installs a snapshot;
    nothing was applied.
    """

    code = "log_diverged"


class NotReady(ClusterError):
    """This node cannot answer consistently yet (syncing, or behind the LSN the client asked for)."""

    code = "not_ready"
