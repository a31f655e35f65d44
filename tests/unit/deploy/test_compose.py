"""deploy/compose.yaml is a valid Compose file that runs the whole system on one host.

Validated offline against the Compose specification's own JSON schema
(deploy/schemas/compose/compose-spec.json, see deploy/schemas/README.md); then held to
what the project needs of it: every service that exists in this checkout, each with
its health check, restart policy, read-only root and the servers it waits for; every
file it mounts present; Prometheus scraping every service under its name and Grafana
given every dashboard.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from immunreg.config import DEFAULT_PORTS
from immunreg.discovery import available_services
from immunreg.paths import REPO_ROOT
from immunreg.portal import SERVICES

DEPLOY = REPO_ROOT / "deploy"
SCHEMA = DEPLOY / "schemas" / "compose" / "compose-spec.json"


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return loaded


def validator() -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))


def test_the_file_follows_the_compose_specification() -> None:
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator().iter_errors(compose())
    ]
    assert errors == []


def test_the_schema_refuses_what_compose_refuses() -> None:
    # A schema that accepted anything would make the test above pass on any file.
    broken = compose()
    broken["services"]["registration"]["restart"] = {"policy": "always"}
    broken["services"]["booking"]["no_such_key"] = True
    assert len(list(validator().iter_errors(broken))) >= 2


def test_every_service_runs_with_health_checks_restarts_and_a_read_only_root() -> None:
    services = compose()["services"]
    for name in available_services():
        assert name in services, f"{name} is missing from deploy/compose.yaml"
        service = services[name]
        assert service["command"] == ["serve", name]
        assert service["read_only"] is True and "/tmp" in service["tmpfs"]
        assert service["restart"] == "unless-stopped"
        assert "/readyz" in " ".join(service["healthcheck"]["test"])
        for server in ("postgres", "kafka"):
            assert service["depends_on"][server]["condition"] == "service_healthy"
    for name in ("postgres", "kafka", "prometheus", "grafana"):
        assert "healthcheck" in services[name] and "restart" in services[name], name
    kafka = services["kafka"]
    assert kafka["image"].startswith("docker.io/apache/kafka:")
    assert kafka["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"


def test_every_mounted_file_exists() -> None:
    for name, service in compose()["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name} mounts {source}, which is missing"


def test_prometheus_scrapes_every_service_and_grafana_gets_every_dashboard() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.compose.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    for name in available_services():
        assert jobs[name]["static_configs"][0]["targets"] == [f"{name}:8080"]
    assert config["rule_files"] == ["/etc/prometheus/immunreg-rules.yml"]
    grafana = compose()["services"]["grafana"]
    mounted = {v.split(":")[1]: v.split(":")[0] for v in grafana["volumes"]}
    provider = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "dashboards" / "immunreg.yaml").read_text()
    )["providers"][0]
    folder = DEPLOY / mounted[provider["options"]["path"]].removeprefix("./")
    boards = sorted(p.name for p in folder.glob("*.json"))
    assert len(boards) >= 1
    assert boards == sorted(p.name for p in (DEPLOY / "grafana").glob("*.json"))


@pytest.mark.parametrize("board", sorted((DEPLOY / "grafana").glob("*.json")), ids=lambda p: p.name)
def test_each_dashboard_reads_the_provisioned_data_source(board: Path) -> None:
    data = json.loads(board.read_text())
    names = {v["name"]: v for v in data["templating"]["list"]}
    assert names["datasource"]["query"] == "prometheus"


def test_the_portal_listens_outside_its_container_and_knows_where_each_service_is() -> None:
    portal = compose()["services"]["portal"]
    assert portal["command"] == ["portal"] and portal["ports"] == ["8080:8080"]
    environment = portal["environment"]
    assert (environment["PORTAL_HOST"], environment["PORTAL_PORT"]) == ("0.0.0.0", "8080")
    ports = {name: port for name, port in DEFAULT_PORTS.items() if name in SERVICES}
    for name in SERVICES:
        assert environment[f"{name.upper()}_PUBLIC_URL"] == f"http://localhost:{ports[name]}"
