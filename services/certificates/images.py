"""QR images for certificates issued before they were rendered at issue.

A certificate's images are rendered in the transaction that issues it (handlers.py), so
a download is a read. Rows kept before that have none: a background renderer draws them
in batches, in a worker thread so the event loop keeps answering, and stops once none
is left (no row is issued without images any more); a download of one not rendered yet
renders it and stores it. Both hold the certificate's row locked while they render (a
renderer skips rows a download holds; a download waits for a renderer's batch), so each
certificate is rendered once, and an erasure, which takes the same row lock, never
races a late write of images that carry the erased names.
"""

from __future__ import annotations

import asyncio
import logging

import asyncpg

from immunreg.config import Settings, setting
from immunreg.eventstore.errors import database_unavailable

from . import readmodel, render
from .handlers import CertificateMetrics
from .hcert import SERVICE
from .readmodel import QrFormat
from .render import QrImages

log = logging.getLogger(__name__)

# Certificates rendered per transaction: at 3-10 ms for both images (quiet to loaded
# machine), a batch holds its rows (and an erasure of one of their citizens) for under a
# second, far inside the pool's idle-in-transaction timeout.
RENDER_BATCH = 50
# How long the renderer waits to try again after a failure.
RENDER_INTERVAL = 1.0
INTERVAL_SETTING = "QR_RENDER_INTERVAL"


def render_interval(settings: Settings) -> float | None:
    """`CERTIFICATES_QR_RENDER_INTERVAL`: seconds the renderer of certificates issued
    without images waits to try again after a failure (default 1); 0 runs no renderer in
    this process, so such an image is rendered at its first download (another replica's
    renderer may still run)."""
    text = settings.extra.get(INTERVAL_SETTING) or setting(INTERVAL_SETTING, SERVICE)
    interval = float(text) if text else RENDER_INTERVAL
    if interval < 0:
        raise ValueError(f"{SERVICE.upper()}_{INTERVAL_SETTING} must be >= 0, not {text}")
    return interval or None


def _render_all(claimed: list[tuple[str, str]]) -> list[tuple[str, QrImages]]:
    return [(uvci, render.qr_images(hc1)) for uvci, hc1 in claimed]


async def render_batch(
    pool: asyncpg.Pool, metrics: CertificateMetrics | None, limit: int = RENDER_BATCH
) -> int:
    """Render and store the images of up to `limit` certificates that have none; how many."""
    async with pool.acquire() as conn, conn.transaction():
        claimed = await readmodel.claim_unrendered(conn, limit)
        if not claimed:
            return 0
        rendered = await asyncio.to_thread(_render_all, claimed)
        await readmodel.store_images(conn, rendered)
    if metrics is not None:
        metrics.qr_rendered.labels("background").inc(len(rendered))
    return len(rendered)


async def render_backlog(
    pool: asyncpg.Pool, metrics: CertificateMetrics | None, interval: float = RENDER_INTERVAL
) -> None:
    """Render the images of every certificate kept without them, then stop (a background
    task: certificates issued from now on come with theirs)."""
    while True:
        try:
            while await render_batch(pool, metrics):
                pass
            return
        except Exception as error:  # the renderer must outlive any one failure
            level = logging.WARNING if database_unavailable(error) else logging.ERROR
            log.log(level, "rendering QR images failed; trying again later", exc_info=True)
        await asyncio.sleep(interval)


async def render_now(
    pool: asyncpg.Pool, metrics: CertificateMetrics | None, uvci: str, image: QrFormat
) -> bytes | None:
    """The certificate's QR image in `image` format, rendered and stored now unless the
    renderer (or another download) stored it meanwhile; None if its `HC1:` is gone (the
    citizen was erased)."""
    async with pool.acquire() as conn, conn.transaction():
        hc1, images = await readmodel.claim_for_rendering(conn, uvci)
        if hc1 is None:
            return None
        if images is None:
            images = await asyncio.to_thread(render.qr_images, hc1)
            await readmodel.store_images(conn, [(uvci, images)])
            if metrics is not None:
                metrics.qr_rendered.labels("download").inc()
    return images.svg if image == "svg" else images.png
