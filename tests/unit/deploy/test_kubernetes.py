"""deploy/k8s renders with kustomize, and every resource it renders is valid.

Kubernetes' own kinds are validated (strict: an unknown field is an error) against the
schemas the `kubernetes-validate` package ships; the operators' kinds (Strimzi, CloudNativePG,
prometheus-operator) against the openAPIV3Schema of their published CRDs, committed under
deploy/schemas (see its README). Then the checks that matter to running immunreg: each
service as several replicas with probes, limits, a locked-down security context and a
spread; Kafka and topics as the reliability rules need them; one database per service.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from functools import cache
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from immunreg.discovery import available_services
from immunreg.paths import REPO_ROOT, state_dir

K8S = REPO_ROOT / "deploy" / "k8s"
SCHEMAS = REPO_ROOT / "deploy" / "schemas"
KUBERNETES_VERSION = "1.33.0"
OVERLAYS = ["base", "overlays/production"]
OPERATOR_KINDS = {
    ("kafka.strimzi.io", "Kafka"): "strimzi/040-Crd-kafka.yaml",
    ("kafka.strimzi.io", "KafkaTopic"): "strimzi/043-Crd-kafkatopic.yaml",
    ("kafka.strimzi.io", "KafkaNodePool"): "strimzi/045-Crd-kafkanodepool.yaml",
    ("kafka.strimzi.io", "KafkaUser"): "strimzi/044-Crd-kafkauser.yaml",
    ("postgresql.cnpg.io", "Cluster"): "cloudnative-pg/postgresql.cnpg.io_clusters.yaml",
    ("postgresql.cnpg.io", "Database"): "cloudnative-pg/postgresql.cnpg.io_databases.yaml",
    ("monitoring.coreos.com", "ServiceMonitor"): (
        "prometheus-operator/monitoring.coreos.com_servicemonitors.yaml"
    ),
    ("monitoring.coreos.com", "PrometheusRule"): (
        "prometheus-operator/monitoring.coreos.com_prometheusrules.yaml"
    ),
}


def kustomize() -> str:
    """The binary `make kustomize` builds (or one on the PATH)."""
    built = state_dir() / "tools" / "bin" / "kustomize"
    if built.exists():
        return str(built)
    found = [os.path.join(p, "kustomize") for p in os.environ.get("PATH", "").split(os.pathsep)]
    for candidate in found:
        if os.access(candidate, os.X_OK):
            return candidate
    pytest.fail("kustomize is missing: `make kustomize` builds it")


@cache
def rendered(overlay: str) -> tuple[dict[str, Any], ...]:
    result = subprocess.run(
        [kustomize(), "build", str(K8S / overlay)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def of_kind(overlay: str, kind: str) -> Iterator[dict[str, Any]]:
    return (doc for doc in rendered(overlay) if doc["kind"] == kind)


@cache
def crd_schema(group: str, kind: str, version: str) -> dict[str, Any]:
    crd = yaml.safe_load((SCHEMAS / OPERATOR_KINDS[(group, kind)]).read_text())
    assert crd["spec"]["group"] == group and crd["spec"]["names"]["kind"] == kind
    for served in crd["spec"]["versions"]:
        if served["name"] == version and served["served"]:
            schema: dict[str, Any] = served["schema"]["openAPIV3Schema"]
            return schema
    raise AssertionError(f"{kind}.{group} has no served version {version}")


def problems(doc: dict[str, Any]) -> list[str]:
    """Why the resource is invalid, or [] when it is valid."""
    group, _, version = doc["apiVersion"].rpartition("/")
    if (group, doc["kind"]) in OPERATOR_KINDS:
        schema = crd_schema(group, doc["kind"], version)
        checker = jsonschema.Draft4Validator(schema)
        return [
            f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in checker.iter_errors(doc)
        ]
    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        return [f"{'/'.join(map(str, error.path))}: {error.message}"]
    return []


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_rendered_resource_is_valid(overlay: str) -> None:
    found = {f"{doc['kind']}/{doc['metadata']['name']}": problems(doc) for doc in rendered(overlay)}
    assert {name: errors for name, errors in found.items() if errors} == {}
    kinds = {name.partition("/")[0] for name in found}
    assert {"Deployment", "Kafka", "Cluster", "ServiceMonitor", "PrometheusRule"} <= kinds


def test_the_validators_refuse_a_bad_resource() -> None:
    # Both paths must be able to say no, or a pass above proves nothing.
    deployment = next(of_kind("base", "Deployment"))
    bad = {**deployment, "spec": {**deployment["spec"], "replicas": "two", "surprise": 1}}
    assert problems(bad)
    topic = next(of_kind("base", "KafkaTopic"))
    assert problems({**topic, "spec": {**topic["spec"], "partitions": "many"}})
    user = next(of_kind("base", "KafkaUser"))
    assert problems({**user, "spec": {**user["spec"], "authentication": {"type": "anonymous"}}})


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_service_runs_as_several_locked_down_replicas(overlay: str) -> None:
    deployments = {d["metadata"]["name"]: d for d in of_kind(overlay, "Deployment")}
    names = set(available_services())
    # The citizens' portal runs beside the services, from the same image, without their
    # database, autoscaler or metrics.
    assert set(deployments) == names | {"portal"}
    for kind in ("Service", "PodDisruptionBudget"):
        assert {d["metadata"]["name"] for d in of_kind(overlay, kind)} == names | {"portal"}, kind
    for kind in ("HorizontalPodAutoscaler", "ServiceMonitor"):
        assert {d["metadata"]["name"] for d in of_kind(overlay, kind)} == names, kind
    for name, deployment in deployments.items():
        spec = deployment["spec"]
        pod = spec["template"]["spec"]
        [container] = pod["containers"]
        assert spec["replicas"] >= 2
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["resources"]["requests"] and container["resources"]["limits"]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert pod["securityContext"]["runAsNonRoot"] is True
        spread = pod["topologySpreadConstraints"]
        assert spread and all(
            c["labelSelector"]["matchLabels"] == spec["selector"]["matchLabels"] for c in spread
        )
        secrets = {v["name"]: v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
        if name == "portal":
            assert container["args"] == ["portal"]
            env = {e["name"]: e["value"] for e in container["env"]}
            assert env == {"PORTAL_HOST": "0.0.0.0", "PORTAL_PORT": "8080"}
            assert secrets == {}
            continue
        assert container["args"] == ["serve", name]
        assert container["env"][-1]["value"].endswith(f"@immunreg-pg-rw:5432/{name}")
        assert secrets == {
            "jwt-keys": "immunreg-jwt",
            "service-keys": f"{name}-keys",
            "kafka-user": name,
        }
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["KAFKA_SASL_USERNAME"] == name
    for hpa in of_kind(overlay, "HorizontalPodAutoscaler"):
        assert hpa["spec"]["scaleTargetRef"]["name"] == hpa["metadata"]["name"]
        assert hpa["spec"]["minReplicas"] >= 2


def test_production_refuses_development_keys_and_pins_its_image() -> None:
    [config] = of_kind("overlays/production", "ConfigMap")
    assert config["data"]["IMMUNREG_ENV"] == "production"
    [base_config] = of_kind("base", "ConfigMap")
    assert "IMMUNREG_ENV" not in base_config["data"]
    for deployment in of_kind("overlays/production", "Deployment"):
        image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
        assert ":" in image and not image.endswith(":latest")
        assert deployment["spec"]["replicas"] >= 3


def test_kafka_keeps_three_copies_and_every_topic_exists() -> None:
    [kafka] = of_kind("base", "Kafka")
    config = kafka["spec"]["kafka"]["config"]
    assert config["default.replication.factor"] == 3 and config["min.insync.replicas"] == 2
    pools = {p["metadata"]["name"]: p["spec"] for p in of_kind("base", "KafkaNodePool")}
    assert {tuple(p["roles"]) for p in pools.values()} == {("controller",), ("broker",)}
    assert all(p["replicas"] >= 3 for p in pools.values())
    topics = {t["spec"]["topicName"]: t["spec"] for t in of_kind("base", "KafkaTopic")}
    from immunreg.contracts.topics import CONTEXT_NAMES, dlq_topic

    expected = {f"{c}.events.v1" for c in CONTEXT_NAMES}
    expected |= {dlq_topic(t) for t in expected}
    assert set(topics) == expected
    for name, spec in topics.items():
        assert spec["replicas"] == 3 and spec["config"]["min.insync.replicas"] == 2
        assert spec["partitions"] >= 12
        assert (spec["config"]["retention.ms"] == -1) == (not name.endswith(".dlq")), name


def test_every_service_authenticates_to_kafka_and_writes_only_its_own_topics(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from immunreg.contracts.topics import TOPIC_NAMESPACE_VARIABLE
    from immunreg.messaging.access import acls, kafka_access

    monkeypatch.delenv(TOPIC_NAMESPACE_VARIABLE, raising=False)  # production's topic names

    [kafka] = of_kind("base", "Kafka")
    assert kafka["spec"]["kafka"]["authorization"]["type"] == "simple"
    for listener in kafka["spec"]["kafka"]["listeners"]:
        assert listener["authentication"]["type"] == "scram-sha-512", listener["name"]
    [config] = of_kind("base", "ConfigMap")
    assert config["data"]["KAFKA_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT"
    assert config["data"]["KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert config["data"]["KAFKA_SASL_PASSWORD_FILE"] == "/etc/immunreg/kafka/password"
    users = {u["metadata"]["name"]: u["spec"] for u in of_kind("base", "KafkaUser")}
    table = kafka_access()
    assert set(users) == set(table) == set(available_services())
    for name, spec in users.items():
        assert spec["authentication"]["type"] == "scram-sha-512"
        assert spec["authorization"]["type"] == "simple"
        found = [
            (
                acl["resource"]["type"],
                acl["resource"]["name"],
                acl["resource"]["patternType"] == "prefix",
                tuple(sorted(acl["operations"])),
            )
            for acl in spec["authorization"]["acls"]
        ]
        assert all(acl.get("type", "allow") == "allow" for acl in spec["authorization"]["acls"])
        expected = [(a.resource, a.name, a.prefixed, a.operations) for a in acls(table[name])]
        assert sorted(found) == sorted(expected), name
        # Whatever the table says: a service writes no event topic but its own (the
        # dead-letter topics of what it reads are shared by the groups reading it).
        written = {n for kind, n, _, ops in found if kind == "topic" and "Write" in ops}
        read = {n for kind, n, _, ops in found if kind == "topic" and "Read" in ops}
        own = f"{name}.events.v1"
        assert written <= {own} | {f"{t}.dlq" for t in read if not t.endswith(".dlq")}, name
        assert not any(
            kind == "cluster" or (prefixed and kind == "topic") for kind, _, prefixed, _ in found
        )


def test_one_database_and_role_per_service() -> None:
    [cluster] = of_kind("base", "Cluster")
    roles = {r["name"]: r for r in cluster["spec"]["managed"]["roles"]}
    databases = {d["spec"]["name"]: d["spec"] for d in of_kind("base", "Database")}
    for name in available_services():
        assert databases[name]["owner"] == name
        assert roles[name]["passwordSecret"]["name"] == f"immunreg-db-{name}"
    assert cluster["spec"]["instances"] >= 3


def test_the_prometheus_rule_is_the_promtool_tested_rules_file() -> None:
    [rule] = of_kind("base", "PrometheusRule")
    tested = yaml.safe_load(
        (REPO_ROOT / "deploy" / "prometheus" / "immunreg-rules.yml").read_text()
    )
    assert rule["spec"] == tested


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_portal_and_the_routes_it_calls_are_public_under_the_names_the_config_gives(
    overlay: str,
) -> None:
    [config] = (
        c
        for c in of_kind(overlay, "ConfigMap")
        if c["metadata"]["name"].startswith("immunreg-config")
    )
    data = config["data"]
    [ingress] = of_kind(overlay, "Ingress")
    rules = {r["host"]: r["http"]["paths"] for r in ingress["spec"]["rules"]}
    [tls] = ingress["spec"]["tls"]
    assert set(tls["hosts"]) == set(rules)
    services = {s["metadata"]["name"]: s for s in of_kind(overlay, "Service")}
    routed: dict[str, set[str]] = {}
    for host, paths in rules.items():
        for path in paths:
            backend = path["backend"]["service"]
            # Every route names a port the Service it points at has.
            ports = {p["name"] for p in services[backend["name"]]["spec"]["ports"]}
            assert backend["port"]["name"] in ports, (host, path)
            routed.setdefault(host, set()).add(backend["name"])
        assert len(routed[host]) == 1, host
    by_service = {next(iter(names)): host for host, names in routed.items()}
    # Services share no public name with the portal, and publish only their /v1 routes:
    # /metrics, /healthz and /readyz stay inside the cluster.
    for host, paths in rules.items():
        if host != by_service["portal"]:
            assert all(p["path"].startswith("/v1/") for p in paths), host
    # The browser reaches each service where the portal's config says, and each service
    # lets the portal's public origin call it.
    from immunreg.portal import SERVICES

    assert set(by_service) == {"portal", *SERVICES}
    for name in SERVICES:
        assert data[f"{name.upper()}_PUBLIC_URL"] == f"https://{by_service[name]}"
    assert data["CORS_ORIGINS"] == f"https://{by_service['portal']}"
    # Every call the pages make reaches its service through one of its routes.
    for name, path in portal_calls():
        assert any(path.startswith(p["path"]) for p in rules[by_service[name]]), (name, path)
    # The base's names are placeholders that only an overlay replaces.
    placeholder = all(host.endswith(".example") for host in rules)
    assert placeholder == (overlay == "base")


def portal_calls() -> set[tuple[str, str]]:
    """(service, path) of every API call in the portal's script; a `${...}` stands for an id."""
    from immunreg.portal import SERVICES, STATIC

    script = (STATIC / "portal.js").read_text()
    calls = set(re.findall(r'api\("(\w+)", [`"](/v1/[^`"?]*)', script))
    audited = re.search(r"const AUDITED = \[([^\]]*)\]", script)
    assert audited, "portal.js lists the services whose reads it shows"
    for name in re.findall(r'"(\w+)"', audited.group(1)):
        calls.add((name, "/v1/citizens/${id}/reads"))
    certificates = re.search(r"function certificatePath\([^)]*\) \{\s*return `(/v1/[^`]*)`", script)
    assert certificates, "portal.js builds certificate paths in certificatePath"
    calls.add(("certificates", certificates.group(1)))
    assert {name for name, _ in calls} == set(SERVICES)
    return calls
