"""Debian's Chromium for Playwright: where it is, how it is started, and why it cannot be when it cannot.

Playwright's own browser downloads are never used (the machines running the tests are offline);
``.ci/run`` and ``./dev test`` install the ``chromium`` package instead. ``TN_CHROMIUM`` overrides
the path.
"""

from __future__ import annotations

import os
import shutil

CHROMIUM = os.environ.get("TN_CHROMIUM", "/usr/bin/chromium")
ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
)


def launch_options() -> dict | str:
    """Keyword arguments for ``playwright.chromium.launch``, or why Chromium cannot be used here."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the python package playwright is not installed (pip install playwright; no browser download needed)"
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)) and shutil.which(CHROMIUM) is None:
        return f"Chromium is not installed at {CHROMIUM} (apt-get install chromium, or set TN_CHROMIUM)"
    return {"executable_path": CHROMIUM, "headless": True, "args": list(ARGS)}
