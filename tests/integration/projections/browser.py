"""Headless Chromium (Debian's `chromium`) for the dashboard test: installed if missing.

On a fresh machine the test installs it (`apt-get install -y chromium`, needs root);
where that is impossible the test is skipped, saying why.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from pathlib import Path

import pytest

NAMES = ("chromium", "chromium-browser", "google-chrome")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    # Virtual time waits for the page's fetches before dumping or capturing.
    "--virtual-time-budget=20000",
)


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


async def run_chromium(
    binary: str, url: str, profile: Path, *args: str, size: tuple[int, int] = (1400, 1000)
) -> str:
    """Run headless chromium on `url` with extra `args`; its stdout (e.g. --dump-dom)."""
    process = await asyncio.create_subprocess_exec(
        binary,
        *FLAGS,
        f"--window-size={size[0]},{size[1]}",
        f"--user-data-dir={profile}",
        *args,
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    if process.returncode != 0:
        raise AssertionError(f"chromium exited {process.returncode}: {err.decode()[-2000:]}")
    return out.decode()
