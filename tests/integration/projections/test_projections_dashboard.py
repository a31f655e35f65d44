"""The dashboard in a real headless browser, over a synthetic history: the map, the legend,
the chart and the tables are drawn, with the numbers the API gives; a screenshot is saved
to tests/artifacts/projections-dashboard.png."""

from __future__ import annotations

import re
from datetime import UTC, datetime, time

from immunreg.http.auth import Role, issue_token
from immunreg.paths import REPO_ROOT
from immunreg.reference.geography import districts
from services.projections.app import DEFAULT_GEOJSON
from services.projections.dashboard_strings import messages
from services.projections.domain import today
from services.projections.synthetic import Synthetic

from .browser import LOAD_TIMEOUT_MS, browser_page, ensure_chromium, load_dashboard
from .conftest import History, Projections

ARTIFACTS = REPO_ROOT / "tests" / "artifacts"


def element(dom: str, element_id: str) -> str:
    """The text of the element with this id, and everything after it up to 600 characters."""
    start = dom.index(f'id="{element_id}"')
    return dom[start : start + 1500]


async def test_the_dashboard_draws_the_map_chart_and_tables(projections: Projections) -> None:
    binary = ensure_chromium()
    synthetic = Synthetic(
        projections.sources, end=today(), days=240, sites=40, seed=11, citizens_hint=2300
    )
    # History records from midnight of the synthetic history's first day (a date).
    history = History(projections.sources, start=datetime.combine(synthetic.start, time(), UTC))
    history.envelopes = list(synthetic.envelopes(limit=25_000))
    await projections.apply(history, history.envelopes)
    coverage = await projections.get("/v1/coverage", group_by="district")
    people = coverage["total"]["people"]
    assert people == synthetic.expected.dose1_people > 1000
    daily = await projections.get("/v1/doses/daily")

    token = issue_token(projections.private_key, Role.PUBLIC_HEALTH, subject="dashboard-test")
    url = f"http://127.0.0.1:{projections.client.server.port}/#token={token}"
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "projections-dashboard.png"
    full = ARTIFACTS / "projections-dashboard-full.png"
    async with browser_page(binary) as (page, errors):
        loaded = await load_dashboard(page, url)
        dom = await page.content()
        (ARTIFACTS / "projections-dashboard.html").write_text(dom)
        await page.screenshot(path=screenshot)
        await page.screenshot(path=full, full_page=True)
        # Serbian in Cyrillic, chosen once: words, numbers and dates follow, and it is
        # remembered when the page is opened again.
        await page.select_option("#lang", "sr-Cyrl")
        await page.wait_for_selector("body[data-loaded]", timeout=LOAD_TIMEOUT_MS)
        cyrillic = (await page.text_content("h1"), await page.text_content("#kpi-1 .value"))
        await page.reload()
        await page.wait_for_selector("body[data-loaded]", timeout=LOAD_TIMEOUT_MS)
        remembered = await page.evaluate("document.documentElement.lang")
        await page.screenshot(path=ARTIFACTS / "projections-dashboard-sr-Cyrl.png")
    assert loaded == "yes", f"every panel loaded (data-loaded={loaded!r}, errors={errors})"
    assert not errors, errors
    assert screenshot.stat().st_size > 50_000

    # The map: every district shaded (a fill set by the script), Kosovo hatched, a legend.
    shaded = re.findall(r'<path class="district[^"]*"[^>]*data-code="(RS-\d\d)"[^>]*fill="#', dom)
    shaded += re.findall(
        r'<path class="district[^"]*"[^>]*fill="#[^"]*"[^>]*data-code="(RS-\d\d)"', dom
    )
    assert set(shaded) == set(districts())
    if DEFAULT_GEOJSON.is_file():
        # Outlines from ../shared/data: Kosovo and Metohija's five districts hatched.
        assert dom.count('class="district nodata"') == 5
        assert "No 2022 census data" in element(dom, "legend")
    else:
        # No outlines beside this checkout: the page falls back to a tile map.
        assert "Tile map (one square per district)" in dom
    # Key figures with thousands separators, as the API counts them.
    assert f"{people:,}" in element(dom, "kpi-1")
    assert "Fresh as of" in element(dom, "fresh")
    # The chart: bars for the three kinds of dose and the 7-day average line.
    chart = dom[dom.index('id="daily-svg"') :]
    for kind in ("first", "series", "booster"):
        assert f'class="bar {kind}"' in chart
    assert '<polyline class="avg"' in chart
    assert f"{daily['total']:,} doses" in element(dom, "daily-hint")
    # Tables, including the ones a public-health token unlocks.
    assert "Grad Beograd" in dom[dom.index('id="district-table"') :]
    assert "Comirnaty" in element(dom, "products")
    assert "Women" in element(dom, "sexes")
    for panel in ("stock", "bookings", "queue", "wastage", "safety"):
        section = dom[dom.index(f'id="{panel}"') :]
        assert section.lstrip().startswith(f'id="{panel}"><div class="scroll"><table>'), panel
    assert "Sign out" in dom
    assert cyrillic == (messages()["sr-Cyrl"]["h1"], f"{people:,}".replace(",", "."))
    assert remembered == "sr-Cyrl"
