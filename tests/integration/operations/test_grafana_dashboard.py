"""The Grafana dashboard's queries are valid PromQL, and its layout is sound.

Each query becomes a recording rule in a scratch rules file that `promtool check rules`
parses (the dashboard's `$job` variable replaced by what "All" selects).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from immunreg.localinfra.tools import debian_tool
from immunreg.paths import REPO_ROOT

DASHBOARD = REPO_ROOT / "deploy" / "grafana" / "immunreg-overview.json"


def queries() -> list[str]:
    board: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in board["panels"] for t in p.get("targets", [])]


def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    found = queries()
    assert len(found) >= 15
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query{i}", "expr": q.replace("$job", ".*")}
                    for i, q in enumerate(found)
                ],
            }
        ]
    }
    scratch = tmp_path / "dashboard-rules.json"  # YAML is a superset of JSON
    scratch.write_text(json.dumps(rules))
    result = subprocess.run(
        [str(debian_tool("prometheus", "promtool")), "check", "rules", str(scratch)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(found)} rules found" in result.stdout


def test_panels_have_unique_ids_and_fit_the_grid() -> None:
    board: dict[str, Any] = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
    assert {v["name"] for v in board["templating"]["list"]} == {"datasource", "job"}
