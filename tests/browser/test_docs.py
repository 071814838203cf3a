"""/docs in a real browser (Debian's Chromium, headless) against a real node: Swagger UI renders every
operation of the schema with its operationId and the cluster's headers, under the node's strict
Content-Security-Policy, and nothing is requested from any other host (every such request is
recorded and refused, so the page is shown as it is offline)."""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx
import pytest

from tests._node import ready_node
from tests.cluster.harness import TEST_SUBNET

pytestmark = [pytest.mark.cluster, pytest.mark.browser]

RENDER_TIMEOUT_MS = 20_000
RECORD_VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (e) => window.__violations.push(`${e.violatedDirective} ${e.blockedURI}`));
"""


def test_docs_render_every_operation_from_the_node_alone(browser_page, tmp_path):
    from playwright.sync_api import expect

    node = ready_node(tmp_path, f"{TEST_SUBNET}.203", JWT_SECRET="a-docs-test-secret-of-more-than-32-bytes")
    try:
        schema = httpx.get(f"{node.url}/openapi.json", timeout=10).json()
        operation_ids = sorted(op["operationId"] for item in schema["paths"].values() for op in item.values())
        page = browser_page
        own_host = urlsplit(node.url).netloc
        requested: list[str] = []
        elsewhere: list[str] = []

        def only_the_node(route) -> None:
            url = route.request.url
            requested.append(url)
            if urlsplit(url).netloc != own_host:
                elsewhere.append(url)
                route.abort()
            else:
                route.continue_()

        page.route("**/*", only_the_node)
        page.add_init_script(RECORD_VIOLATIONS)
        page.goto(f"{node.url}/docs")

        operations = page.locator(".opblock")
        expect(operations).to_have_count(len(operation_ids), timeout=RENDER_TIMEOUT_MS)
        shown = sorted(page.locator(".opblock .opblock-summary-operation-id").all_inner_texts())
        assert shown == operation_ids
        expect(page.locator(".info .title")).to_contain_text("Talent Nest")

        # The client contract is on the routes: X-Min-LSN on a read, Idempotency-Key on a write.
        search = page.locator("#operations-users-searchUsers")
        search.locator(".opblock-summary").click()
        expect(search.locator(".parameters")).to_contain_text("X-Min-LSN", timeout=RENDER_TIMEOUT_MS)
        create = page.locator("#operations-posts-createPost")
        create.locator(".opblock-summary").click()
        expect(create.locator(".parameters")).to_contain_text("Idempotency-Key", timeout=RENDER_TIMEOUT_MS)
        expect(create.locator(".responses-wrapper")).to_contain_text("X-Cluster-LSN", timeout=RENDER_TIMEOUT_MS)

        assert any(url.endswith("/openapi.json") for url in requested)
        assert any("/static/swagger-ui/swagger-ui-bundle.js" in url for url in requested)
        assert elsewhere == [], f"/docs asked other hosts for {elsewhere}"
        assert page.evaluate("window.__violations") == [], "the page broke its Content-Security-Policy"
    finally:
        node.stop()
