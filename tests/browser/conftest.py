"""Fixtures for browser tests: a headless Chromium page, and the cluster factory of tests/cluster."""

from __future__ import annotations

import pytest

from tests._tools import missing
from tests.browser.chromium import launch_options
from tests.cluster.conftest import make_cluster  # noqa: F401  (the same fixture, for tests here)


@pytest.fixture
def browser_page():
    """A fresh page in a headless Chromium; skips (fails in CI), saying why, when Chromium cannot run here."""
    options = launch_options()
    if isinstance(options, str):
        missing(options)  # skips; fails in CI, which installs Chromium
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(**options)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            yield page
            assert not errors, f"the page raised JavaScript errors: {errors}"
        finally:
            browser.close()
