"""The Grafana dashboards in deploy/grafana, written from the metrics every service has.

One dashboard per service (its requests, errors, latency, replicas, relay, dependencies,
and the panels of what it does: appending events, consuming topics) and one for the
event flow across services (throughput per topic, lag per group, outbox backlog and
age, delivery latency, dead letters). A new service gets its dashboard by running

    .venv/bin/python -m immunreg.observability.dashboards

which rewrites deploy/grafana/immunreg-service-*.json and immunreg-event-flow.json;
tests/unit/deploy holds the committed files to this output. The overview dashboard
(immunreg-overview.json) is written by hand.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from immunreg.paths import REPO_ROOT

FOLDER = REPO_ROOT / "deploy" / "grafana"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
WIDTH = 8
HEIGHT = 8


@dataclass(frozen=True)
class Panel:
    """One panel: its title, its queries (legend per query) and how it draws them."""

    title: str
    queries: tuple[tuple[str, str], ...]
    kind: str = "timeseries"
    unit: str = "short"
    description: str = ""


def _board(uid: str, title: str, description: str, panels: list[Panel], job: str) -> dict[str, Any]:
    laid: list[dict[str, Any]] = []
    for index, panel in enumerate(panels):
        body: dict[str, Any] = {
            "id": index + 1,
            "type": panel.kind,
            "title": panel.title,
            "description": panel.description,
            "datasource": DATASOURCE,
            "gridPos": {
                "h": HEIGHT,
                "w": WIDTH,
                "x": (index % 3) * WIDTH,
                "y": (index // 3) * HEIGHT,
            },
            "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
            "targets": [
                {
                    "refId": chr(ord("A") + n),
                    "datasource": DATASOURCE,
                    "expr": expr,
                    "legendFormat": legend,
                    **({"format": "heatmap"} if panel.kind == "heatmap" else {}),
                }
                for n, (expr, legend) in enumerate(panel.queries)
            ],
        }
        if panel.kind == "heatmap":
            body["options"] = {"calculate": False, "yAxis": {"unit": panel.unit}}
        laid.append(body)
    return {
        "title": title,
        "uid": uid,
        "tags": ["immunreg"],
        "description": description,
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": False,
        "refresh": "30s",
        "time": {"from": "now-3h", "to": "now"},
        "templating": {"list": [_datasource_variable(), _job_variable(job)]},
        "panels": laid,
    }


def _datasource_variable() -> dict[str, Any]:
    return {
        "name": "datasource",
        "type": "datasource",
        "query": "prometheus",
        "label": "Data source",
        "current": {},
    }


def _job_variable(job: str) -> dict[str, Any]:
    # A constant on a service's dashboard, a choice on the event flow's.
    if job != "$all":
        return {"name": "job", "type": "constant", "query": job, "hide": 2}
    return {
        "name": "job",
        "type": "query",
        "label": "Service",
        "datasource": DATASOURCE,
        "query": {"query": "label_values(immunreg_http_requests_total, job)", "refId": "jobs"},
        "definition": "label_values(immunreg_http_requests_total, job)",
        "includeAll": True,
        "multi": True,
        "allValue": ".*",
        "current": {"text": "All", "value": "$__all"},
        "refresh": 2,
    }


SELECT = 'job=~"$job"'


def service_panels(publishes: bool, consumes: bool) -> list[Panel]:
    """What every service shows, then its event store's and its consumers' panels."""
    panels = [
        Panel(
            "Requests per second, by route",
            (
                (
                    f"sum by (route) (rate(immunreg_http_requests_total{{{SELECT}}}[5m]))",
                    "{{route}}",
                ),
            ),
            unit="reqps",
        ),
        Panel(
            "Server error ratio",
            (
                (
                    f'(sum(rate(immunreg_http_requests_total{{{SELECT},status=~"5.."}}[5m])) '
                    f"or vector(0)) / sum(rate(immunreg_http_requests_total{{{SELECT}}}[5m]))",
                    "5xx / all",
                ),
            ),
            unit="percentunit",
            description="Alert HighErrorRate fires above 2 % for 5 minutes.",
        ),
        Panel(
            "Request latency",
            (
                (
                    "sum by (le) (rate(immunreg_http_request_duration_seconds_bucket"
                    f"{{{SELECT}}}[5m]))",
                    "{{le}}",
                ),
            ),
            kind="heatmap",
            unit="s",
        ),
        Panel(
            "Latency p99, by route",
            (
                (
                    "histogram_quantile(0.99, sum by (route, le) (rate("
                    f"immunreg_http_request_duration_seconds_bucket{{{SELECT}}}[5m])))",
                    "{{route}}",
                ),
            ),
            unit="s",
        ),
        Panel(
            "Replicas up, and the one whose relay leads",
            (
                (f"sum(up{{{SELECT}}})", "replicas up"),
                (f"sum(immunreg_relay_leading{{{SELECT}}})", "relay leaders (must be 1)"),
            ),
        ),
        Panel(
            "Dependencies at the last readiness probe",
            (
                (
                    f"min by (dependency) (immunreg_dependency_up{{{SELECT}}})",
                    "{{dependency}}",
                ),
            ),
            description="1 up, 0 down. Kafka down only degrades; the database down is a 503.",
        ),
        Panel(
            "Outbox backlog and age",
            (
                (f"max(immunreg_outbox_backlog{{{SELECT}}})", "rows"),
                (f"max(immunreg_outbox_publish_lag_seconds{{{SELECT}}})", "oldest (s)"),
            ),
            description="Alert OutboxBacklogGrowing: the oldest row over a minute old for 5 m.",
        ),
    ]
    if publishes:
        panels += [
            Panel(
                "Events appended per second, by type",
                (
                    (
                        f"sum by (type) (rate(immunreg_eventstore_events_total{{{SELECT}}}[5m]))",
                        "{{type}}",
                    ),
                ),
            ),
            Panel(
                "Event append latency",
                (
                    (
                        "sum by (le) (rate(immunreg_eventstore_append_seconds_bucket"
                        f"{{{SELECT}}}[5m]))",
                        "{{le}}",
                    ),
                ),
                kind="heatmap",
                unit="s",
            ),
        ]
    if consumes:
        panels += [
            Panel(
                "Consumer lag, by topic",
                ((f"sum by (topic) (immunreg_consumer_lag_messages{{{SELECT}}})", "{{topic}}"),),
                description="`immunreg consumers status <service>` shows it per partition.",
            ),
            Panel(
                "Messages handled, by outcome",
                (
                    (
                        "sum by (outcome) (rate(immunreg_consumer_messages_total"
                        f"{{{SELECT}}}[5m]))",
                        "{{outcome}}",
                    ),
                ),
            ),
        ]
    return panels


def event_flow_panels() -> list[Panel]:
    """Across services: what goes through Kafka, and how far behind each reader is."""
    return [
        Panel(
            "Published per second, by topic",
            (
                (
                    f"sum by (topic) (rate(immunreg_relay_published_total{{{SELECT}}}[5m]))",
                    "{{topic}}",
                ),
            ),
        ),
        Panel(
            "Consumed per second, by group and topic",
            (
                (
                    "sum by (group, topic) (rate(immunreg_consumer_messages_total"
                    f"{{{SELECT}}}[5m]))",
                    "{{group}} ← {{topic}}",
                ),
            ),
        ),
        Panel(
            "Lag, by consumer group",
            ((f"sum by (group) (immunreg_consumer_lag_messages{{{SELECT}}})", "{{group}}"),),
            description="Alert ConsumerLagHigh: over 10 000 for 10 minutes.",
        ),
        Panel(
            "Outbox backlog, by service",
            ((f"sum by (job) (immunreg_outbox_backlog{{{SELECT}}})", "{{job}}"),),
        ),
        Panel(
            "Outbox age, by service",
            ((f"max by (job) (immunreg_outbox_publish_lag_seconds{{{SELECT}}})", "{{job}}"),),
            unit="s",
        ),
        Panel(
            "Relay leaders, by service",
            ((f"sum by (job) (immunreg_relay_leading{{{SELECT}}})", "{{job}}"),),
            description="Exactly one per service; alert RelayLeaderMissing when none for 2 m.",
        ),
        Panel(
            "Recorded to applied (event age at the consumer)",
            (
                (
                    "sum by (le) (rate(immunreg_consumer_event_age_seconds_bucket"
                    f"{{{SELECT}}}[5m]))",
                    "{{le}}",
                ),
            ),
            kind="heatmap",
            unit="s",
        ),
        Panel(
            "Relay batch (one Kafka transaction) duration",
            (
                (
                    f"sum by (le) (rate(immunreg_relay_batch_seconds_bucket{{{SELECT}}}[5m]))",
                    "{{le}}",
                ),
            ),
            kind="heatmap",
            unit="s",
        ),
        Panel(
            "Dead-letter ratio, by group",
            (
                (
                    "(sum by (group) (rate(immunreg_consumer_messages_total"
                    f'{{{SELECT},outcome="dead_lettered"}}[5m])) or sum by (group) (rate('
                    f"immunreg_consumer_messages_total{{{SELECT}}}[5m])) * 0) / sum by (group) "
                    f"(rate(immunreg_consumer_messages_total{{{SELECT}}}[5m]))",
                    "{{group}}",
                ),
            ),
            unit="percentunit",
            description="`immunreg dlq list <topic>` shows each dead letter and why.",
        ),
    ]


def dashboards() -> dict[str, dict[str, Any]]:
    """File name -> dashboard, for every service in this checkout and the event flow."""
    from immunreg.discovery import available_services, load_service

    boards: dict[str, dict[str, Any]] = {}
    for name in available_services():
        service = load_service(name)
        # A service's own readiness checks are taken to follow Kafka (immunreg.service):
        # projections' read-model follower consumes without a Reactions table.
        consumes = service.reactions is not None or bool(service.readiness)
        panels = service_panels(service.publishes is not None, consumes)
        boards[f"immunreg-service-{name}.json"] = _board(
            f"immunreg-{name}",
            f"immunreg {name}",
            f"The {name} service: HTTP, replicas and relay, dependencies, outbox"
            + (", events appended" if service.publishes else "")
            + (", consumers" if consumes else "")
            + ". Runbook: docs/operations.md.",
            panels,
            name,
        )
    boards["immunreg-event-flow.json"] = _board(
        "immunreg-event-flow",
        "immunreg event flow",
        "Events from every outbox through Kafka to every consumer group. Runbook: "
        "docs/operations.md.",
        event_flow_panels(),
        "$all",
    )
    return boards


def render(board: dict[str, Any]) -> str:
    """A dashboard as the committed file holds it."""
    return json.dumps(board, indent=2, ensure_ascii=False) + "\n"


def write(folder: Path = FOLDER) -> list[Path]:
    """Write every generated dashboard into `folder`; return the files."""
    written = []
    for name, board in dashboards().items():
        path = folder / name
        path.write_text(render(board))
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write():
        print(path.relative_to(REPO_ROOT))
