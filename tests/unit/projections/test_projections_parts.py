"""Denominators, the map, the page, the sources and the CSV shape: no I/O."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from aiohttp.test_utils import make_mocked_request

from immunreg.contracts import registration
from immunreg.contracts.topics import TOPIC_NAMESPACE_VARIABLE
from immunreg.reference.geography import AgeBand, age_bands, districts
from immunreg.serbian import latin_left
from services.projections import dashboard_strings
from services.projections.app import api, csv_response, wants_csv
from services.projections.dashboard import render_dashboard
from services.projections.domain import population
from services.projections.geo import district_map, simplify, tile_map
from services.projections.handlers import Sources, build_reactions, recorders
from services.projections.models import model_name
from services.projections.schemas import CoverageRow

NATIONAL = 6_647_003


def band(label: str) -> AgeBand:
    return next(b for b in age_bands() if b.label == label)


def test_census_totals_are_the_national_total() -> None:
    assert sum(b.population for b in age_bands()) == NATIONAL
    assert sum(d.population for d in districts().values()) == NATIONAL


def test_populations_are_exact_where_the_census_has_them_and_estimated_below() -> None:
    belgrade = districts()["RS-00"].population
    assert population(geo=belgrade, band=None, sex=None) == (belgrade, False)
    b = band("60-64")
    assert population(geo=None, band=b, sex=None) == (b.population, False)
    assert population(geo=None, band=b, sex="female") == (b.female, False)
    assert population(geo=None, band=None, sex="other") == (None, False)
    estimate, estimated = population(geo=belgrade, band=b, sex=None)
    assert estimated and estimate == round(belgrade * b.population / NATIONAL)


def test_simplify_keeps_ends_and_drops_points_near_the_line() -> None:
    line = [(0.0, 0.0), (1.0, 0.001), (2.0, 0.0), (3.0, 5.0), (4.0, 0.0)]
    assert simplify(line, 0.01) == [(0.0, 0.0), (2.0, 0.0), (3.0, 5.0), (4.0, 0.0)]


def test_the_map_has_every_district_from_the_geojson_or_tiles(tmp_path: Path) -> None:
    shared = Path(__file__).resolve().parents[4] / "shared/data/serbia_districts.geojson"
    drawn = district_map(shared) if shared.exists() else tile_map("no file")
    codes = {s.code for s in drawn.shapes if s.code}
    assert codes == set(districts())
    missing = district_map(tmp_path / "absent.geojson")
    assert missing.kind == "tiles" and {s.code for s in missing.shapes} == set(districts())
    broken = tmp_path / "broken.geojson"
    broken.write_text("{not json")
    assert district_map(broken).kind == "tiles"


def test_a_small_geojson_becomes_paths(tmp_path: Path) -> None:
    square = [[[20.0, 44.0], [20.5, 44.0], [20.5, 44.5], [20.0, 44.5], [20.0, 44.0]]]
    features = [
        {
            "type": "Feature",
            "properties": {"name": "Grad Beograd"},
            "geometry": {"type": "MultiPolygon", "coordinates": [square]},
        },
        {
            "type": "Feature",
            "properties": {"name": "Kosovski okrug"},
            "geometry": {"type": "Polygon", "coordinates": square},
        },
    ]
    path = tmp_path / "d.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    drawn = district_map(path)
    assert drawn.kind == "geojson"
    [belgrade, kosovo] = drawn.shapes
    assert (belgrade.code, kosovo.code, kosovo.name) == ("RS-00", None, "Kosovski okrug")
    assert belgrade.d.startswith("M") and belgrade.d.endswith("Z")


def test_the_page_is_self_contained() -> None:
    page = render_dashboard(tile_map("test")).decode()
    assert page.count('class="district"') == len(districts())
    for external in ("http://", "https://", "//cdn"):
        assert external not in page.replace("http://www.w3.org/2000/svg", "")
    # The only <link> is the favicon, inline.
    favicon = re.search(r'<link rel="icon" href="data:[^"]+">', page)
    assert favicon is not None
    assert re.findall(r"<link[^>]*>", page) == [favicon[0]]
    assert '"age_bands": ["0-4"' in page
    assert "/*CONFIG*/" not in page and "<!--MAP-->" not in page


def test_sources_can_be_private_topics(monkeypatch: pytest.MonkeyPatch) -> None:
    # Without a run's namespace (the suite sets one): the names production uses.
    monkeypatch.delenv(TOPIC_NAMESPACE_VARIABLE, raising=False)
    private = Sources.prefixed("t123_")
    assert private.registration.topic == "t123_registration.events.v1"
    assert set(private.registration.event_types) == set(registration.CONTEXT.event_types)
    assert Sources.prefixed("").topics() == Sources.published().topics()


def test_every_event_of_every_context_has_a_reaction() -> None:
    sources = Sources.published()
    reactions = build_reactions(sources)
    assert reactions.batch is not None
    for ctx in sources.contexts():
        for name in ctx.event_types:
            assert reactions.lookup(ctx.topic, name) is not None
    assert len(recorders(sources)) == 25


def test_model_names_are_valid_schema_names() -> None:
    name = model_name("projections")
    assert name.startswith("projections_m") and len(name) == len("projections_m") + 14 + 4


@pytest.mark.parametrize(
    ("fmt", "accept", "csv"),
    [
        ("csv", "application/json", True),
        ("json", "text/csv", False),
        (None, "text/csv", True),
        (None, "text/csv, application/json", False),
        (None, "*/*", False),
    ],
)
def test_csv_is_chosen_by_format_or_accept(fmt: str | None, accept: str, csv: bool) -> None:
    request = make_mocked_request("GET", "/v1/coverage", headers={"Accept": accept})
    assert wants_csv(request, fmt) is csv  # type: ignore[arg-type]


def test_csv_starts_with_a_comment_line_carrying_freshness() -> None:
    from datetime import UTC, datetime

    fresh = datetime(2024, 7, 1, 12, 0, tzinfo=UTC)
    rows = [CoverageRow(key="RS-00", name="Grad Beograd", people=2, population=10)]
    response = csv_response(rows, ["key", "name", "people"], {"dose": "1", "fresh_as_of": fresh})
    assert response.text == (
        "# dose=1; fresh_as_of=2024-07-01T12:00:00+00:00\nkey,name,people\nRS-00,Grad Beograd,2\n"
    )
    assert response.headers["Fresh-As-Of"] == fresh.isoformat()


def test_the_openapi_document_names_every_route() -> None:
    paths = set(api.openapi()["paths"])
    assert {
        "/v1/coverage",
        "/v1/doses/daily",
        "/v1/stock",
        "/v1/bookings/stats",
        "/v1/safety",
        "/v1/model",
    } <= paths


def test_the_dashboard_speaks_serbian_in_both_scripts_and_english() -> None:
    assert dashboard_strings.EN.keys() == dashboard_strings.SR_LATN.keys()
    page = render_dashboard(tile_map("test")).decode()
    used = set(re.findall(r'data-i18n(?:-aria)?="([a-z_0-9]+)"', page))
    used |= set(re.findall(r'\bT\("([a-z_0-9]+)"[,)]', page))
    assert used and used <= dashboard_strings.EN.keys(), used - dashboard_strings.EN.keys()
    cyrillic = dashboard_strings.messages()["sr-Cyrl"]
    left = {k: v for k, v in cyrillic.items() if latin_left(v)}
    assert not left, left
    assert '"sr-Cyrl": {' in page
