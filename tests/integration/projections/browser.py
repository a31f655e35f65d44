"""Headless Debian Chromium driven by Playwright, for the dashboard test.

Playwright waits for the page to say it has loaded (`data-loaded` on <body>) instead of
guessing a time budget: a slow, busy CI machine gets the same page as a fast one.
Chromium is installed from Debian's packages if missing (root only; otherwise the test
is skipped, saying why). Playwright's own browser download is never used.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from playwright.async_api import Page, async_playwright

NAMES = ("chromium", "chromium-browser", "google-chrome")
# This machine's network is closed: without these Chromium keeps trying to reach Google.
FLAGS = (
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
)
LOAD_TIMEOUT_MS = 90_000


def find_chromium() -> str | None:
    for name in NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def ensure_chromium() -> str:
    """The chromium binary, installed from Debian's packages when missing (root only)."""
    found = find_chromium()
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("chromium is missing; install it with `apt-get install -y chromium` (root)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, timeout=600, env=env)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "chromium"], check=True, timeout=1200, env=env
    )
    found = find_chromium()
    if not found:
        pytest.skip("apt-get installed chromium but no binary was found")
    return found


@asynccontextmanager
async def browser_page(
    binary: str, size: tuple[int, int] = (1400, 1000)
) -> AsyncIterator[tuple[Page, list[str]]]:
    """A fresh page in headless Chromium, and the list its console errors collect into."""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=binary, headless=True, args=list(FLAGS)
        )
        try:
            page = await browser.new_page(viewport={"width": size[0], "height": size[1]})
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            yield page, errors
        finally:
            await browser.close()


async def load_dashboard(page: Page, url: str) -> str:
    """Open `url` and wait until every panel has answered; the page's `data-loaded` value."""
    await page.goto(url)
    await page.wait_for_selector("body[data-loaded]", timeout=LOAD_TIMEOUT_MS)
    loaded: str = await page.evaluate("document.body.dataset.loaded")
    return loaded
