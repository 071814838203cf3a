"""The dashboard in a real browser (Debian's Chromium, headless) against a real 3-node cluster.

Loaded from a follower, it shows three nodes and marks the leader; after a SIGKILL of the leader
it marks the new one and shows the dead node as down, without a reload. When the node the page
talks to dies, a banner says so; when that node is back, the banner goes and the page carries on. Drained
by an operator, the node reads as "Drained", not "Unhealthy".
"""

from __future__ import annotations

import json

import pytest

from talentnest.cluster.auth import HEADER as SIGNATURE_HEADER
from talentnest.cluster.auth import sign

pytestmark = [pytest.mark.cluster, pytest.mark.browser]

FAST = {"HEARTBEAT_INTERVAL": "0.5", "FAILURE_TIMEOUT": "5", "ELECTION_INTERVAL": "2"}
UPDATE_TIMEOUT_MS = 20_000  # generous: two cores shared with other suites


def card(page, node):
    return page.locator(f'.node-card[data-node-id="{node.node_id}"]')


def test_the_dashboard_follows_a_failover_and_the_loss_of_its_own_node_without_a_reload(make_cluster, browser_page):
    from playwright.sync_api import expect

    page = browser_page
    cluster = make_cluster(3, env=FAST)
    leader = cluster.wait_for_leader()
    follower = cluster.node("backend-2")
    assert follower is not leader

    page.goto(f"{follower.url}/")
    expect(page.locator(".node-card")).to_have_count(3, timeout=UPDATE_TIMEOUT_MS)
    leaders = page.locator('.node-card[data-leader="true"]')
    expect(leaders).to_have_count(1)
    expect(leaders).to_have_attribute("data-node-id", str(leader.node_id))
    expect(card(page, leader).locator(".role")).to_contain_text("Leader")
    for node in cluster.nodes:
        expect(card(page, node)).to_have_attribute("data-state", "up")
        expect(card(page, node).locator(".address")).to_have_text(node.url.removeprefix("http://"))
    expect(page.locator("#sum-leader")).to_have_text(f"Node {leader.node_id}")
    expect(page.locator("#banner")).to_be_hidden()
    page.evaluate("window.__loadedOnce = true")  # gone if the page were ever reloaded

    leader.stop(graceful=False)
    new_leader = cluster.wait_for_leader(exclude=[leader], timeout=20)
    expect(leaders).to_have_attribute("data-node-id", str(new_leader.node_id), timeout=UPDATE_TIMEOUT_MS)
    expect(leaders).to_have_count(1)
    expect(card(page, leader)).to_have_attribute("data-state", "down")
    expect(card(page, leader).locator(".role")).to_have_text("Down")
    expect(card(page, leader).locator(".health")).to_contain_text("Down")
    expect(page.locator("#sum-healthy")).to_have_text("2 of 3")
    expect(page.locator("#events")).to_contain_text(f"leader is {new_leader.node_id}")
    assert page.evaluate("window.__loadedOnce") is True

    # The node serving the page dies: the page says so plainly and keeps what it last knew.
    served_by = follower
    served_by.stop(graceful=False)
    banner = page.locator("#banner")
    expect(banner).to_be_visible(timeout=UPDATE_TIMEOUT_MS)
    expect(banner).to_contain_text(f"node {served_by.node_id}")
    expect(banner).to_contain_text("not answering")
    expect(page.locator("#conn")).to_have_attribute("data-state", "down")
    expect(page.locator(".node-card")).to_have_count(3)

    # It comes back: the page recovers by itself.
    served_by.start()
    expect(banner).to_be_hidden(timeout=UPDATE_TIMEOUT_MS)
    expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    expect(card(page, served_by)).to_have_attribute("data-state", "up", timeout=UPDATE_TIMEOUT_MS)
    expect(page.locator('.node-card[data-leader="true"]')).to_have_count(1, timeout=UPDATE_TIMEOUT_MS)
    assert page.evaluate("window.__loadedOnce") is True

    # An operator drains it: the page reads "Drained", which is no fault; undrained, "Healthy" again.
    for drained, says in ((True, "Drained"), (False, "Healthy")):
        body = json.dumps({"drained": drained}).encode()
        headers = {
            SIGNATURE_HEADER: sign(cluster.cluster_key, "POST", "/cluster/drain", body),
            "Content-Type": "application/json",
        }
        assert cluster.http.post(f"{served_by.url}/cluster/drain", content=body, headers=headers).status_code == 200
        expect(card(page, served_by).locator(".health")).to_contain_text(says, timeout=UPDATE_TIMEOUT_MS)
        expect(card(page, served_by).locator(".health")).not_to_contain_text("Unhealthy")
