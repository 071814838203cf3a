"""Prometheus metrics of one node: its own registry, HTTP requests by route template, the /metrics page.

Each app has a registry of its own (never prometheus_client's global one), so that several apps in
one process (tests) never share or clash over series. Cluster figures are read at scrape time by
collectors registered beside the HTTP metrics (see ``talentnest.cluster.metrics``).
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from itertools import accumulate

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.utils import floatToGoString
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match

from talentnest.routing import RouteIndex

# The classic text format (0.0.4): every Prometheus version reads it, and our names need no UTF-8.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
# Seconds; from a cached read (well under a millisecond) to a forwarded write waiting out a failover.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Requests that match no route share one label value, so a scanner cannot create series at will.
UNMATCHED = "unmatched"


def new_registry() -> CollectorRegistry:
    """A registry for one app, with the process' CPU, memory and file descriptors."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    return registry


def route_template(route: BaseRoute) -> str:
    """``/api/posts/{post_id}`` rather than ``/api/posts/42``: the label stays bounded."""
    return getattr(route, "path_format", None) or getattr(route, "path", None) or UNMATCHED


class _Latency:
    __slots__ = ("counts", "total")

    def __init__(self, buckets: int):
        self.counts = [0] * (buckets + 1)  # one per bucket, then +Inf; cumulated at scrape time
        self.total = 0.0


class RequestStats:
    """HTTP requests by method, route template and status, and their latencies: a collector.

    Recording is two dictionary updates and a bisection, no lock: the app runs on one event
    loop, and a scrape (on the same loop) reads the figures between two requests. That keeps
    the per-request cost to about a microsecond, where prometheus_client's own Counter and
    Histogram (a lock per update) cost several.
    """

    def __init__(self, buckets: Sequence[float] = LATENCY_BUCKETS):
        self.buckets = tuple(buckets)
        self._le = [floatToGoString(bound) for bound in self.buckets] + ["+Inf"]
        self.counts: dict[tuple[str, str, str], int] = {}
        self.latency: dict[tuple[str, str], _Latency] = {}

    def record(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, str(status))
        self.counts[key] = self.counts.get(key, 0) + 1
        series = self.latency.get(key[:2])
        if series is None:
            series = self.latency[key[:2]] = _Latency(len(self.buckets))
        series.counts[bisect_left(self.buckets, seconds)] += 1
        series.total += seconds

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "talentnest_http_requests",
            "HTTP requests answered, by method, route template and status code.",
            labels=("method", "route", "status"),
        )
        for labels, count in list(self.counts.items()):
            requests.add_metric(labels, count)
        yield requests
        latency = HistogramMetricFamily(
            "talentnest_http_request_duration_seconds",
            "Time from a request's arrival to the end of its answer, by method and route template.",
            labels=("method", "route"),
        )
        for labels, series in list(self.latency.items()):
            cumulative = list(zip(self._le, accumulate(series.counts), strict=True))
            latency.add_metric(labels, cumulative, sum_value=series.total)
        yield latency


class StatusSend:
    """An ASGI ``send`` that passes every message on and remembers the answer's status (500 until one starts)."""

    __slots__ = ("send", "status")

    def __init__(self, send) -> None:
        self.send = send
        self.status = 500

    async def __call__(self, message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        await self.send(message)


class HttpMetrics:
    """Pure ASGI middleware: records each HTTP request in ``stats`` by method, route template and
    status, with the time until the app has sent the whole answer.

    The route is the one the router matched (``scope["route"]``, set for the API's routes);
    other requests (the cluster's routes, the dashboard, a forwarded write, a body too large)
    are matched afterwards, by their path as it arrived, against those of ``routes`` that can
    match it (``routing.RouteIndex``). Paths without parameters are remembered, so the
    cluster's busy routes cost one dictionary lookup.
    An exception escaping the app counts as a 500 and is re-raised unchanged.
    """

    def __init__(self, app, *, stats: RequestStats, routes: Sequence[BaseRoute]):
        self.app = app
        self.stats = stats
        self.routes = RouteIndex(routes)
        self._fixed_paths: dict[str, str] = {}

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        # Routing rewrites root_path (mounts); keep the path as it arrived for matching afterwards.
        path, root_path = scope["path"], scope.get("root_path", "")
        answer = StatusSend(send)
        try:
            await self.app(scope, receive, answer)
        finally:
            method = scope["method"] if scope["method"] in _METHODS else "other"
            route = scope.get("route")
            template = route_template(route) if route is not None else self._match(method, path, root_path)
            self.stats.record(method, template, answer.status, time.perf_counter() - started)

    def _match(self, method: str, path: str, root_path: str) -> str:
        known = self._fixed_paths.get(path)
        if known is not None:
            return known
        scope = {"type": "http", "method": method, "path": path, "root_path": root_path}
        partial = None
        for route in self.routes.candidates(path, root_path):
            match, _ = route.matches(scope)
            if match == Match.FULL:
                template = route_template(route)
                if template == path:
                    self._fixed_paths[path] = template  # bounded: one entry per parameterless route
                return template
            if match == Match.PARTIAL and partial is None:
                partial = route
        return route_template(partial) if partial is not None else UNMATCHED


def metrics_endpoint(registry: CollectorRegistry):
    """The handler of ``GET /metrics``: the registry in the Prometheus text format."""

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE, headers={"Cache-Control": "no-store"})

    return metrics


class ArchiveCollector:
    """The continuous archiver's figures (store/archiver.py): how far it got, how far behind it is, what failed."""

    def __init__(self, archiver):
        self.archiver = archiver

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        stats = self.archiver.stats
        gauges = (
            ("talentnest_archive_lsn", "The last LSN written to the archive.", stats.archived_lsn),
            ("talentnest_archive_lag_entries", "Committed entries not yet in the archive.", self.archiver.lag),
            (
                "talentnest_archive_last_success_timestamp_seconds",
                "When the archive was last brought up to date.",
                stats.last_success,
            ),
        )
        for name, text, value in gauges:
            yield GaugeMetricFamily(name, text, value=value)
        counters = (
            ("talentnest_archive_segments", "Log segments written to the archive.", stats.segments),
            ("talentnest_archive_entries", "Log entries written to the archive.", stats.entries),
            ("talentnest_archive_bytes", "Compressed bytes of log segments written to the archive.", stats.bytes),
            ("talentnest_archive_snapshots", "Snapshots written to the archive.", stats.snapshots),
            ("talentnest_archive_failures", "Rounds that could not write to the archive (retried later).", stats.failures),
            (
                "talentnest_archive_gaps",
                "Times entries left the retained log before they were archived (a new chain began).",
                stats.gaps,
            ),
        )
        for name, text, value in counters:
            yield CounterMetricFamily(name, text, value=value)
