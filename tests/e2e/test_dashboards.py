"""Every panel of the generated dashboards finds data in a real Prometheus.

Prometheus (the binary of Debian's `prometheus` package, unpacked once like promtool)
runs on 127.0.0.1, scraping every service of the e2e stack each second under the
service's name as `job`, as deploy/prometheus/prometheus.compose.yml and the
ServiceMonitors do. The test sends the traffic a day at a site makes (a citizen, a site,
a lot, a dose and so a certificate), then asks Prometheus each panel's query, with the
dashboards' `$job` as Grafana sets it, until every one answers with at least one series.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from e2e_http import poll, receive_lot
from test_certificates import call, dose_and_certificate, register

from immunreg.localinfra.tools import debian_tool
from immunreg.observability.dashboards import dashboards

if TYPE_CHECKING:  # tests/e2e is not a package; the fixture is found by pytest
    from conftest import Stack

PRODUCT = "EU/1/20/1528"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def prometheus(stack: Stack, tmp_path: Path) -> Iterator[str]:
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {
                "job_name": name,
                "static_configs": [{"targets": [urllib.parse.urlparse(url).netloc]}],
            }
            for name, url in stack.urls.items()
        ],
    }
    (tmp_path / "prometheus.yml").write_text(json.dumps(config))  # YAML is a superset of JSON
    address = f"127.0.0.1:{free_port()}"
    log = (tmp_path / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            str(debian_tool("prometheus", "prometheus")),
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address={address}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    try:
        poll("Prometheus is ready", lambda: (_ready(f"http://{address}"), None), timeout=60)
        yield f"http://{address}"
    finally:
        process.terminate()
        process.wait(30)
        log.close()


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def series(prometheus: str, query: str) -> list[Any]:
    """The instant vector (or scalar) Prometheus answers for `query` now."""
    url = f"{prometheus}/api/v1/query?{urllib.parse.urlencode({'query': query})}"
    with urllib.request.urlopen(url, timeout=10) as response:
        answer = json.loads(response.read())
    assert answer["status"] == "success", answer
    result: list[Any] = answer["data"]["result"]
    return result


def a_day_at_a_site(stack: Stack) -> None:
    """A site, a lot, a citizen and their dose: every service appends, publishes or consumes."""
    site = f"SITE-D{uuid.uuid4().hex[:8].upper()}"
    status, body, _ = call(
        "PUT",
        f"{stack.urls['booking']}/v1/sites/{site}",
        stack.token("admin"),
        {
            "name": "Dom zdravlja (dashboards)",
            # Sopot: no other test's citizens prefer it, so no scheduling run books
            # them into this site's spare stock.
            "municipality_code": "70238",
            "address": "Svetosavska 1",
            "latitude": 44.58,
            "longitude": 20.42,
            "daily_capacity": {PRODUCT: 100},
        },
    )
    assert status == 201, body
    logistics = stack.token("logistics")
    lot = receive_lot(stack.urls["inventory"], logistics, site, PRODUCT, vials=5, prefix="DASH")
    citizen_id = register(stack)
    given_at = datetime.now(UTC) - timedelta(minutes=5)
    dose_and_certificate(stack, citizen_id, (site, lot), given_at, PRODUCT)
    if "supply" in stack.urls:
        # Supply appends only when asked for a plan: without this its event panels would
        # find data only when an earlier test happened to ask.
        status, body, _ = call(
            "POST",
            f"{stack.urls['supply']}/v1/allocation-runs",
            stack.token("logistics"),
            {"horizon_days": 7},
        )
        assert status == 202, body


def job(board: dict[str, Any]) -> str:
    """What Grafana puts for `$job`: the service's name, or "All" (.*) on the event flow."""
    [variable] = [v for v in board["templating"]["list"] if v["name"] == "job"]
    return str(variable["query"]) if variable["type"] == "constant" else ".*"


def test_every_panel_of_the_generated_dashboards_finds_data(stack: Stack, prometheus: str) -> None:
    wanted = {"registration", "booking", "inventory", "administration", "certificates"}
    if not wanted <= set(stack.urls):
        pytest.skip("a day at a site needs every service that takes part in it")
    a_day_at_a_site(stack)
    queries = {
        f"{name}: {panel['title']}: {target['expr']}": target["expr"].replace("$job", job(board))
        for name, board in dashboards().items()
        for panel in board["panels"]
        for target in panel["targets"]
    }
    assert len(queries) >= 60
    deadline = time.monotonic() + 120
    empty = list(queries)
    while empty and time.monotonic() < deadline:
        empty = [label for label in empty if not series(prometheus, queries[label])]
        if empty:
            time.sleep(1)
    assert empty == []
