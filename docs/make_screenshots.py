"""Screenshots of the cluster dashboard for the README: a healthy 3-node cluster, then after a failover.

Starts a local cluster with the test harness (real nodes on loopback addresses, real DNS), writes
a little so the charts move, loads the dashboard from a follower in Debian's Chromium (headless,
never downloaded), saves ``dashboard-healthy.png``, SIGKILLs the leader, waits until the page shows
the new leader and the dead node as down, and saves ``dashboard-failover.png`` (and a dark variant).

    TN_TEST_SUBNET=127.0.4 /work/venv/bin/python docs/make_screenshots.py [--out docs]

The subnet and published ports come from TN_TEST_SUBNET / TN_TEST_PUBLISH_BASE as in the tests
(nothing is published unless TN_TEST_PUBLISH_BASE says so).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "src")]
os.environ.setdefault("TN_TEST_PUBLISH_BASE", "0")  # read by the harness when imported

from tests.browser.chromium import launch_options  # noqa: E402
from tests.cluster.harness import Cluster  # noqa: E402

ENV = {"HEARTBEAT_INTERVAL": "0.5", "FAILURE_TIMEOUT": "5", "ELECTION_INTERVAL": "2"}
VIEWPORT = {"width": 1280, "height": 1000}


def keep_writing(cluster: Cluster, node, stop: threading.Event) -> None:
    """A slow, steady trickle of posts through ``node`` (a follower: each one is forwarded)."""
    token = cluster.signup(node, username="screenshots").body["token"]
    n = 0
    while not stop.is_set():
        n += 1
        reply = node.request("POST", "/api/posts", json={"content": f"post {n}"}, token=token)
        if reply.status >= 500:
            stop.wait(0.5)  # a failover in progress; try again shortly
        stop.wait(0.05 + 0.1 * (n % 5))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    args = parser.parse_args()
    options = launch_options()
    if isinstance(options, str):
        print(f"cannot take screenshots: {options}", file=sys.stderr)
        return 1
    from playwright.sync_api import expect, sync_playwright

    with tempfile.TemporaryDirectory(prefix="tn-screenshots-") as directory:
        cluster = Cluster(Path(directory), env=ENV)
        stop = threading.Event()
        try:
            cluster.start(3)
            leader = cluster.wait_for_leader()
            follower = next(node for node in cluster.nodes if node is not leader and node.name == "backend-2")
            writer = threading.Thread(target=keep_writing, args=(cluster, cluster.node("backend-1"), stop), daemon=True)
            writer.start()
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(**options)
                page = browser.new_page(viewport=VIEWPORT, device_scale_factor=1)
                page.goto(f"{follower.url}/")
                expect(page.locator(f'.node-card[data-leader="true"][data-node-id="{leader.node_id}"]')).to_be_visible()
                time.sleep(20)  # let the charts fill a third of their minute
                page.screenshot(path=str(args.out / "dashboard-healthy.png"))
                leader.stop(graceful=False)
                new = cluster.wait_for_leader(exclude=[leader], timeout=20)
                expect(page.locator(f'.node-card[data-leader="true"][data-node-id="{new.node_id}"]')).to_be_visible(
                    timeout=20_000
                )
                expect(page.locator(f'.node-card[data-node-id="{leader.node_id}"]')).to_have_attribute("data-state", "down")
                time.sleep(8)  # the writes resume on the new leader
                page.screenshot(path=str(args.out / "dashboard-failover.png"))
                page.emulate_media(color_scheme="dark", reduced_motion="reduce")
                page.wait_for_timeout(300)  # let the cards' colour transition finish
                page.screenshot(path=str(args.out / "dashboard-failover-dark.png"))
                browser.close()
        finally:
            stop.set()
            cluster.close()
    for name in ("dashboard-healthy.png", "dashboard-failover.png", "dashboard-failover-dark.png"):
        print(args.out / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
