"""Debian's Chromium, as every browser test here launches it (Playwright cannot
download its own browser in this workplace)."""

from __future__ import annotations

from typing import Any

from tests.capabilities import chromium_path, require

ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]


def launch(playwright: Any) -> Any:
    """A headless Chromium browser from a started ``sync_playwright()``; the test is skipped
    (failed under ``REPROFARM_TESTS_REQUIRE``) where Chromium is not installed."""
    require("chromium")
    return playwright.chromium.launch(executable_path=chromium_path(), args=ARGS)
