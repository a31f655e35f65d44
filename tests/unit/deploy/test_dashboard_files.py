"""The committed dashboards are what immunreg.observability.dashboards writes, and sound.

Whether each query finds data is tested against a real Prometheus scraping the e2e
stack (tests/e2e/test_dashboards.py); PromQL validity by promtool for every dashboard
is in tests/integration/operations/test_grafana_dashboard.py's way, here per file.
"""

from __future__ import annotations

import json

from immunreg.discovery import available_services
from immunreg.observability.dashboards import FOLDER, dashboards, render


def test_every_generated_dashboard_is_committed_as_generated() -> None:
    generated = dashboards()
    assert {f"immunreg-service-{n}.json" for n in available_services()} < set(generated)
    stale = [
        name
        for name, board in generated.items()
        if not (FOLDER / name).exists() or (FOLDER / name).read_text() != render(board)
    ]
    # Run `.venv/bin/python -m immunreg.observability.dashboards` to write them.
    assert stale == []


def test_panels_have_unique_ids_fit_the_grid_and_read_the_data_source_variable() -> None:
    for name, board in dashboards().items():
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), name
        uids = json.loads((FOLDER / name).read_text())["uid"]
        assert uids == board["uid"]
        for panel in board["panels"]:
            assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
            assert panel["targets"], panel["title"]
            assert all(t["datasource"]["uid"] == "${datasource}" for t in panel["targets"])
    uids = [board["uid"] for board in dashboards().values()]
    assert len(uids) == len(set(uids))


def test_heat_maps_read_buckets_and_service_boards_follow_what_the_service_does() -> None:
    boards = dashboards()
    for board in boards.values():
        for panel in board["panels"]:
            if panel["type"] == "heatmap":
                assert all(
                    "_bucket" in t["expr"] and t["format"] == "heatmap" for t in panel["targets"]
                )
    projections = [p["title"] for p in boards["immunreg-service-projections.json"]["panels"]]
    registration = [p["title"] for p in boards["immunreg-service-registration.json"]["panels"]]
    assert "Consumer lag, by topic" in projections
    assert "Events appended per second, by type" not in projections
    assert "Events appended per second, by type" in registration
