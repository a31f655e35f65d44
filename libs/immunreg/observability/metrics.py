"""Prometheus metrics: one registry per service process, owned by its app.

No module-level metric objects: each `Metrics` has its own registry, so tests
can build several apps in one process without collisions.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class Metrics:
    """The RED, event-store, outbox and consumer metrics of one service."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.http_requests = Counter(
            "immunreg_http_requests_total",
            "HTTP requests by route, method and status.",
            ["route", "method", "status"],
            registry=r,
        )
        self.http_latency = Histogram(
            "immunreg_http_request_duration_seconds",
            "HTTP request latency by route and method.",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.database_unavailable = Counter(
            "immunreg_database_unavailable_total",
            "Requests answered 503 because PostgreSQL could not serve them, by reason.",
            ["reason"],
            registry=r,
        )
        self.dependency_up = Gauge(
            "immunreg_dependency_up",
            "1 when the dependency passed the last readiness probe, else 0.",
            ["dependency"],
            registry=r,
        )
        self.append_latency = Histogram(
            "immunreg_eventstore_append_seconds",
            "Time to append events and outbox rows in one transaction.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.append_conflicts = Counter(
            "immunreg_eventstore_conflicts_total",
            "Appends refused for a stale expected version.",
            registry=r,
        )
        self.events_appended = Counter(
            "immunreg_eventstore_events_total",
            "Events appended, by type.",
            ["type"],
            registry=r,
        )
        self.outbox_backlog = Gauge(
            "immunreg_outbox_backlog",
            "Outbox rows committed but not yet published to Kafka.",
            registry=r,
        )
        self.outbox_lag = Gauge(
            "immunreg_outbox_publish_lag_seconds",
            "Age of the oldest unpublished outbox row when the relay last looked.",
            registry=r,
        )
        self.relay_published = Counter(
            "immunreg_relay_published_total",
            "Outbox rows published to Kafka, by topic.",
            ["topic"],
            registry=r,
        )
        self.relay_leading = Gauge(
            "immunreg_relay_leading",
            "1 while this replica holds its schema's relay lock and publishes the outbox, else 0.",
            registry=r,
        )
        self.relay_batch_latency = Histogram(
            "immunreg_relay_batch_seconds",
            "Time to publish one relay batch (one Kafka transaction).",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.consumer_lag = Gauge(
            "immunreg_consumer_lag_messages",
            "Messages behind the partition's high watermark, per group and partition.",
            ["group", "topic", "partition"],
            registry=r,
        )
        self.consumer_processed = Counter(
            "immunreg_consumer_messages_total",
            "Messages a consumer handled, by outcome (applied, skipped, duplicate, dead_lettered).",
            ["group", "topic", "outcome"],
            registry=r,
        )
        self.consumer_event_age = Histogram(
            "immunreg_consumer_event_age_seconds",
            "Event recorded -> applied by this consumer (freshness of read models).",
            ["group"],
            buckets=(*LATENCY_BUCKETS, 30, 60, 300),
            registry=r,
        )
        self.projection_freshness = Gauge(
            "immunreg_projection_newest_event_timestamp_seconds",
            "recorded_at of the newest event applied, per consumer group.",
            ["group"],
            registry=r,
        )

    def counter(self, name: str, documentation: str, labels: list[str] | None = None) -> Counter:
        """A domain counter on this service's registry (e.g. doses recorded)."""
        return Counter(name, documentation, labels or [], registry=self.registry)

    def gauge(self, name: str, documentation: str, labels: list[str] | None = None) -> Gauge:
        """A domain gauge on this service's registry (e.g. alerts open now)."""
        return Gauge(name, documentation, labels or [], registry=self.registry)

    def exposition(self) -> bytes:
        """The text format Prometheus scrapes."""
        return generate_latest(self.registry)
