"""A scripted history through real Kafka and PostgreSQL gives exactly the expected tables;
the same events twice change nothing; a rebuild equals the live model and is swapped in."""

from __future__ import annotations

import csv
import gc
import io
from typing import Any, TypedDict

import asyncpg

from immunreg.http.auth import Role
from immunreg.reference.geography import age_bands, districts, municipalities
from services.projections.rebuild import rebuild

from .conftest import Projections, eventually, table_rows
from .history import COMIRNATY, NOVI_SAD, SINOPHARM, VAXZEVRIA, scripted

NATIONAL = 6_647_003
BELGRADE, SOUTH_BACKA = districts()["RS-00"].population, districts()["RS-06"].population


# "from" is a keyword, so a date range goes in as `**period(...)`; as a TypedDict, mypy knows
# its keys are query parameters and not the `role` that `Projections.get` also takes.
Period = TypedDict("Period", {"from": str, "to": str})


def period(start: str, end: str) -> Period:
    return {"from": start, "to": end}


def pct(part: int, whole: int) -> float:
    return float(f"{100 * part / whole:.6g}")


def by_key(answer: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["key"]: row for row in answer["rows"]}


def counted(answer: dict[str, Any]) -> dict[str, int]:
    return {row["key"]: row["people"] for row in answer["rows"] if row["people"]}


async def test_a_scripted_history_gives_exactly_the_expected_tables(
    projections: Projections,
) -> None:
    history, ids = scripted(projections.sources)
    await projections.apply(history, history.envelopes)
    get = projections.get
    fresh = history.newest.isoformat().replace("+00:00", "Z")

    # Coverage, dose 1, by district at the end of March.
    answer = await get("/v1/coverage", group_by="district", dose="1", date="2024-03-31")
    assert answer["fresh_as_of"] == fresh
    assert len(answer["rows"]) == 25 and counted(answer) == {"RS-00": 2, "RS-06": 2}
    rows = by_key(answer)
    assert rows["RS-00"] == {
        "key": "RS-00",
        "name": "Grad Beograd",
        "people": 2,
        "population": BELGRADE,
        "coverage_pct": pct(2, BELGRADE),
        "share_of_vaccinated_pct": None,
        "population_estimated": False,
        "suppressed": False,
    }
    assert rows["RS-14"]["people"] == 0 and rows["RS-14"]["coverage_pct"] == 0.0
    assert answer["total"]["people"] == 4
    assert answer["total"]["coverage_pct"] == pct(4, NATIONAL)

    # On 2 March: C's dose was corrected to the 3rd, G's was on the 3rd; B's duplicate voided.
    early = await get("/v1/coverage", group_by="district", dose="1", date="2024-03-02")
    assert counted(early) == {"RS-00": 2}
    complete = await get("/v1/coverage", group_by="district", dose="complete", date="2024-03-31")
    assert counted(complete) == {"RS-00": 1, "RS-06": 1}
    boosted = await get("/v1/coverage", group_by="district", dose="booster", date="2024-12-31")
    assert counted(boosted) == {"RS-00": 1}
    assert counted(await get("/v1/coverage", dose="booster", date="2024-06-24")) == {}

    bands = await get("/v1/coverage", group_by="age_band", date="2024-03-31")
    assert len(bands["rows"]) == len(age_bands())
    assert counted(bands) == {"60-64": 1, "30-34": 1, "20-24": 1, "45-49": 1}
    band_60 = next(b for b in age_bands() if b.label == "60-64")
    assert by_key(bands)["60-64"]["population"] == band_60.population
    sexes = await get("/v1/coverage", group_by="sex", date="2024-03-31")
    assert counted(sexes) == {"female": 2, "male": 2}
    products = await get("/v1/coverage", group_by="product", date="2024-03-31")
    assert [(r["key"], r["people"], r["share_of_vaccinated_pct"]) for r in products["rows"]] == [
        (COMIRNATY, 2, 50.0),
        (SINOPHARM, 1, 25.0),
        (VAXZEVRIA, 1, 25.0),
    ]
    assert products["rows"][0]["name"] == "Comirnaty"

    # Filters: a vaccine, an age band (estimated district denominators), a district.
    comirnaty = await get("/v1/coverage", group_by="district", date="2024-03-31", product=COMIRNATY)
    assert counted(comirnaty) == {"RS-00": 2}
    aged = await get("/v1/coverage", group_by="district", date="2024-03-31", age_band="45-49")
    band_45 = next(b for b in age_bands() if b.label == "45-49")
    expected_population = round(SOUTH_BACKA * band_45.population / NATIONAL)
    assert counted(aged) == {"RS-06": 1}
    assert by_key(aged)["RS-06"]["population"] == expected_population
    assert by_key(aged)["RS-06"]["population_estimated"] is True
    in_district = await get(
        "/v1/coverage", group_by="municipality", date="2024-03-31", district="RS-06"
    )
    assert {r["key"] for r in in_district["rows"]} == {
        code for code, m in municipalities().items() if m.district_code == "RS-06"
    }
    assert counted(in_district) == {NOVI_SAD: 2}
    assert in_district["total"]["population"] == SOUTH_BACKA

    # Anonymous callers: the same answer with 1-4 people suppressed, the total too (4),
    # so that nothing adds the withheld districts back up; the rest rounded to fives.
    public = await get("/v1/coverage", role=None, group_by="district", date="2024-03-31")
    assert by_key(public)["RS-00"]["people"] is None and by_key(public)["RS-00"]["suppressed"]
    assert by_key(public)["RS-00"]["coverage_pct"] is None
    assert by_key(public)["RS-01"]["people"] == 0 and not by_key(public)["RS-01"]["suppressed"]
    assert public["total"]["people"] is None and public["total"]["suppressed"]
    assert public["total"]["coverage_pct"] is None
    assert public["rounded_to"] == 5 and answer["rounded_to"] == 1

    # CSV: a comment line with the metadata and freshness, then the table.
    response = await projections.client.get(
        "/v1/coverage",
        params={"group_by": "district", "date": "2024-03-31"},
        headers={**projections.headers(), "Accept": "text/csv"},
    )
    assert response.status == 200 and response.content_type == "text/csv"
    text = await response.text()
    comment, *table = text.splitlines()
    assert comment == (
        f"# coverage=district; dose=1; date=2024-03-31; fresh_as_of={history.newest.isoformat()}"
    )
    parsed = list(csv.DictReader(io.StringIO("\n".join(table))))
    assert parsed[0]["key"] == "RS-00" and parsed[0]["people"] == "2"
    assert parsed[-1]["key"] == "total" and parsed[-1]["people"] == "4"
    assert response.headers["Fresh-As-Of"] == history.newest.isoformat()

    # Daily doses and the 7-day average.
    daily = await get("/v1/doses/daily", **period("2024-03-01", "2024-03-04"))
    assert [
        (r["day"], r["doses"], r["first"], r["series"], r["booster"], r["avg_7d"])
        for r in daily["rows"]
    ] == [
        ("2024-03-01", 2, 2, 0, 0, 0.29),
        ("2024-03-02", 0, 0, 0, 0, 0.29),
        ("2024-03-03", 2, 2, 0, 0, 0.57),
        ("2024-03-04", 0, 0, 0, 0, 0.57),
    ]
    assert daily["total"] == 4 and daily["fresh_as_of"] == fresh
    series = await get("/v1/doses/daily", product=COMIRNATY, **period("2024-03-22", "2024-03-22"))
    assert [(r["doses"], r["series"]) for r in series["rows"]] == [(1, 1)]
    aged_daily = await get(
        "/v1/doses/daily", age_band="45-49", **period("2024-03-01", "2024-03-04")
    )
    assert [r["doses"] for r in aged_daily["rows"]] == [0, 0, 1, 0]
    at_site = await get("/v1/doses/daily", site_id=ids.site_a, **period("2024-03-01", "2024-03-01"))
    assert [(r["doses"], r["first"]) for r in at_site["rows"]] == [(2, None)]
    # Anonymous callers: a site's 2 doses that day are withheld, and so is the 7-day
    # average and the total that would give them away.
    public_site = await get(
        "/v1/doses/daily", role=None, site_id=ids.site_a, **period("2024-03-01", "2024-03-01")
    )
    assert [(r["doses"], r["suppressed"], r["avg_7d"]) for r in public_site["rows"]] == [
        (None, True, 0.0)
    ]
    assert public_site["total"] == 0 and public_site["rounded_to"] == 5
    public_daily = await get("/v1/doses/daily", role=None, **period("2024-03-01", "2024-03-04"))
    assert [(r["doses"], r["first"], r["series"]) for r in public_daily["rows"]] == [
        (None, None, 0),
        (0, 0, 0),
        (None, None, 0),
        (0, 0, 0),
    ]
    booster_day = await get("/v1/doses/daily", **period("2024-06-25", "2024-06-25"))
    assert booster_day["rows"][0]["booster"] == 1

    # Stock, days of supply over the 7 days to the 7th, wastage.
    stock = await get("/v1/stock", date="2024-03-07")
    assert [
        (
            r["location_id"],
            r["product_code"],
            r["doses_available"],
            r["doses_last_7d"],
            r["days_of_supply"],
        )
        for r in stock["locations"]
    ] == [
        (ids.site_a, COMIRNATY, 42, 2, 147.0),
        (ids.site_b, VAXZEVRIA, 30, 1, 210.0),
        ("WH-NATIONAL", COMIRNATY, 1000, 0, None),
    ]
    assert [
        (r["product_code"], r["administered"], r["wasted"], r["wastage_rate_pct"])
        for r in stock["wastage"]
    ] == [(SINOPHARM, 1, 0, 0.0), (COMIRNATY, 2, 2, 50.0), (VAXZEVRIA, 1, 3, 75.0)]
    later = await get("/v1/stock", date="2024-12-31")
    assert [r["wastage_rate_pct"] for r in later["wastage"]] == [0.0, pct(2, 6), 75.0]

    # Bookings: fill (slots / capacity, an override on the 2nd, closed on the 3rd), no-shows.
    bookings = await get("/v1/bookings/stats", **period("2024-03-01", "2024-03-04"))
    assert [
        (
            s["site_id"],
            s["capacity"],
            s["booked"],
            s["fill_rate_pct"],
            s["attended"],
            s["missed"],
            s["no_show_rate_pct"],
        )
        for s in bookings["sites"]
    ] == [
        (ids.site_a, 34, 2, pct(2, 34), 2, 0, 0.0),
        (ids.site_b, 15, 2, pct(2, 15), 0, 1, 100.0),
    ]
    assert bookings["municipalities"] == [
        {"municipality_code": NOVI_SAD, "name": "Novi Sad", "waiting": 1, "booked": 1}
    ]
    assert bookings["totals"] == {
        "capacity": 49,
        "booked": 4,
        "fill_rate_pct": pct(4, 49),
        "attended": 2,
        "missed": 1,
        "no_show_rate_pct": pct(1, 3),
        "waiting": 1,
        "appointments_booked": 1,
    }

    # Adverse events per 100,000 doses.
    safety = await get("/v1/safety")
    assert [
        (r["product_code"], r["doses"], r["reports"], r["serious"], r["reports_per_100k"])
        for r in safety["products"]
    ] == [
        (SINOPHARM, 2, 0, 0, 0.0),
        (COMIRNATY, 4, 1, 0, 25000.0),
        (VAXZEVRIA, 1, 1, 1, 100000.0),
    ]
    assert safety["products"][2]["serious_per_100k"] == 100000.0

    model = await get("/v1/model")
    assert model["events_applied"] == len(history.envelopes)
    assert model["fresh_as_of"] == fresh


async def test_roles_and_bad_queries(projections: Projections) -> None:
    client = projections.client
    for path in ("/v1/stock", "/v1/bookings/stats", "/v1/safety", "/v1/model"):
        assert (await client.get(path)).status == 401
    logistics = projections.headers(Role.LOGISTICS)
    assert (await client.get("/v1/safety", headers=logistics)).status == 403
    assert (await client.get("/v1/stock", headers=logistics)).status == 200
    for params, field in (
        ({"group_by": "planet"}, "query.group_by"),
        ({"age_band": "18-29"}, "query.age_band"),
        ({"date": "yesterday"}, "query.date"),
        ({"district": "RS-99"}, "query.district"),
    ):
        response = await client.get("/v1/coverage", params=params)
        assert response.status == 422, await response.text()
        assert response.content_type == "application/problem+json"
        assert (await response.json())["errors"][0]["field"] == field


async def test_the_same_events_delivered_twice_change_nothing(
    projections: Projections, dsn: str
) -> None:
    history, _ = scripted(projections.sources)
    await projections.apply(history, history.envelopes)
    current = projections.follower.current
    assert current is not None
    conn = await asyncpg.connect(dsn)
    try:
        before = await table_rows(conn, current.schema)
        # The same envelopes again (same event ids), at new offsets, in another order.
        await projections.apply(history, list(reversed(history.envelopes)))
        after = await table_rows(conn, current.schema)
    finally:
        await conn.close()
    assert after == before
    assert before["model_state"][0][2] == len(history.envelopes)  # events_applied


async def test_a_rebuild_equals_the_live_model_and_is_swapped_in(
    projections: Projections, dsn: str, bootstrap: str
) -> None:
    history, ids = scripted(projections.sources)
    # A dose 1 weeks after the others, so that coverage has running sums to compare too.
    history.add(
        projections.sources.administration,
        _late_dose(ids.site_a, "walk-in", day="2024-04-15", municipality="70092"),
        "dose-late-walk-in",
    )
    # As the relays publish: in transactions, so every partition ends with a commit marker
    # (an offset the consumer never sees), and a rebuild must still know it caught up.
    await projections.apply(history, history.envelopes, transactions=4)
    live = projections.follower.current
    assert live is not None

    # The cyclic collector is paused while the members replay, and only then.
    collector: list[bool] = []
    report = await rebuild(
        dsn,
        bootstrap,
        projections.schema,
        projections.sources,
        keep_old=True,
        batch_size=100,
        progress=lambda done, total: collector.append(gc.isenabled()),
    )
    assert collector and not any(collector) and gc.isenabled()
    assert report.retired == live.schema and report.events >= len(history.envelopes)
    conn = await asyncpg.connect(dsn)
    try:
        rebuilt = await table_rows(conn, report.schema)
        assert rebuilt == await table_rows(conn, live.schema)
        assert all(rebuilt.values()), [t for t, rows in rebuilt.items() if not rows]
    finally:
        await conn.close()

    # The running service follows the swap without a restart, and keeps consuming.
    async def swapped() -> bool:
        return bool((await projections.get("/v1/model"))["schema"] == report.schema)

    await eventually(swapped, "the service reads the rebuilt model")
    history.add(
        projections.sources.administration,
        _late_dose(ids.site_a, ids["D"]),
        f"dose-late-{ids['D']}",
    )
    await projections.apply(history, history.envelopes[-1:])
    answer = await projections.get("/v1/coverage", group_by="district", date="2024-12-31")
    # D, registered in Novi Sad, had a dose at last (and the walk-in in Belgrade before).
    assert answer["total"]["people"] == 6
    assert by_key(answer)["RS-06"]["people"] == 3
    assert answer["fresh_as_of"] == history.newest.isoformat().replace("+00:00", "Z")


def _late_dose(
    site: str, citizen: str, *, day: str = "2024-09-01", municipality: str = NOVI_SAD
) -> Any:
    from immunreg.contracts.administration import DoseAdministered

    from .history import at

    return DoseAdministered(
        dose_id=f"late-{citizen}",
        citizen_id=citizen,
        site_id=site,
        site_municipality_code="70092",
        citizen_municipality_code=municipality,
        product_code=COMIRNATY,
        lot_number="LOT-1",
        dose_number=1,
        series_length=2,
        series_complete=False,
        administered_at=at(day),
        age_at_vaccination=74,
        sex="male",
        vaccinator_id="vac-1",
    )
