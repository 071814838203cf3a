"""/metrics and the dashboard on the in-process app: route templates as labels, statuses, latency
buckets, the text format; the page, its files and its headers; neither in the OpenAPI schema."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from talentnest.metrics import LATENCY_BUCKETS, RequestStats


def samples(client) -> dict[tuple[str, tuple], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    found = {}
    for family in text_string_to_metric_families(response.text):
        assert family.name.startswith(("talentnest_", "process_")), family.name
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def requests_of(found, method: str, route: str, status: str) -> float:
    key = ("talentnest_http_requests_total", (("method", method), ("route", route), ("status", status)))
    return found.get(key, 0.0)


def test_requests_are_counted_by_route_template_and_status(client, make_member):
    member = make_member()
    before = samples(client)
    assert client.get(f"/api/users/{member.username}").status_code == 200
    assert client.get("/api/users/nobody-here").status_code == 404
    assert client.get("/no/such/path/7").status_code == 404
    assert client.post("/api/posts", content=b"x" * (2 * 1024 * 1024)).status_code == 413  # refused before routing
    assert client.request("BREW", "/api/posts").status_code == 405
    assert client.get("/cluster/status").status_code == 200
    after = samples(client)

    def moved(method, route, status) -> float:
        return requests_of(after, method, route, status) - requests_of(before, method, route, status)

    assert moved("GET", "/api/users/{username}", "200") == 1
    assert moved("GET", "/api/users/{username}", "404") == 1
    assert moved("GET", "unmatched", "404") == 1
    assert moved("POST", "/api/posts", "413") == 1
    assert moved("other", "/api/posts", "405") == 1
    assert moved("GET", "/cluster/status", "200") == 1
    labels = {dict(labels).get("route") for (name, labels) in after if name == "talentnest_http_requests_total"}
    assert not any(member.username in route or "nobody-here" in route or "/7" in route for route in labels)
    count = ("talentnest_http_request_duration_seconds_count", (("method", "GET"), ("route", "/api/users/{username}")))
    assert after[count] - before.get(count, 0) == 2


def test_latency_buckets_are_cumulative_with_le_semantics():
    stats = RequestStats()
    for seconds in (0.0005, LATENCY_BUCKETS[0], 0.003, 99.0):
        stats.record("GET", "/x", 200, seconds)
    (_, histogram) = list(stats.collect())
    buckets = {s.labels["le"]: s.value for s in histogram.samples if s.name.endswith("_bucket")}
    assert buckets["0.001"] == 2  # a value equal to a bound falls in that bound's bucket
    assert buckets["0.0025"] == 2 and buckets["0.005"] == 3 and buckets["10.0"] == 3 and buckets["+Inf"] == 4
    total = next(s.value for s in histogram.samples if s.name.endswith("_sum"))
    assert abs(total - (0.0005 + 0.001 + 0.003 + 99.0)) < 1e-9


def test_the_cluster_figures_describe_this_node(client, app):
    found = samples(client)
    node = app.state.node
    assert found[("talentnest_term", ())] == node.term
    assert found[("talentnest_applied_lsn", ())] == app.state.db.last_lsn
    assert found[("talentnest_role", (("role", node.role.value),))] == 1
    assert found[("talentnest_is_leader", ())] == (1 if node.is_leader() else 0)


def test_the_dashboard_page_and_its_files_are_served_and_kept_out_of_the_schema(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp
    assert "static/dashboard.js" in page.text
    assert "http://" not in page.text and "https://" not in page.text  # nothing from elsewhere (the machine may be offline)
    for name, kind in (("dashboard.js", "javascript"), ("dashboard.css", "text/css"), ("favicon.svg", "image/svg+xml")):
        response = client.get(f"/static/{name}")
        assert response.status_code == 200 and kind in response.headers["content-type"], name
    assert client.get("/static/../config.py").status_code == 404
    paths = client.get("/openapi.json").json()["paths"]
    assert "/metrics" in paths and "/" not in paths and not any(path.startswith("/static") for path in paths)
