"""Every metric the alerting rules and the Grafana dashboard use is one the running
services export.

A renamed metric would otherwise leave an alert or a panel silently watching nothing.
"""

from __future__ import annotations

import re
import urllib.request
from typing import TYPE_CHECKING

from immunreg.paths import REPO_ROOT

if TYPE_CHECKING:
    from conftest import Stack

RULES = REPO_ROOT / "deploy" / "prometheus" / "immunreg-rules.yml"
DASHBOARD = REPO_ROOT / "deploy" / "grafana" / "immunreg-overview.json"
HISTOGRAM_SAMPLES = ("_bucket", "_count", "_sum")


def families(url: str) -> dict[str, str]:
    """Metric family name -> type, from the `# TYPE` lines of a /metrics page."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        text = response.read().decode()
    return dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE))


def exported(name: str, known: dict[str, str]) -> bool:
    if name in known:
        return True
    for suffix in HISTOGRAM_SAMPLES:
        if name.endswith(suffix) and known.get(name.removesuffix(suffix)) == "histogram":
            return True
    return False


def test_every_metric_an_alert_or_a_panel_uses_is_exported(stack: Stack) -> None:
    per_service = {name: families(url) for name, url in stack.urls.items()}
    everywhere = {family: kind for known in per_service.values() for family, kind in known.items()}
    for source in (RULES, DASHBOARD):
        used = set(re.findall(r"\bimmunreg_[a-z0-9_]+", source.read_text()))
        assert len(used) >= 5, used
        missing = sorted(name for name in used if not exported(name, everywhere))
        assert missing == [], f"{source.name} uses metrics no service exports: {missing}"
    # The platform's own metrics come from the one app factory: every service has them.
    for service, known in per_service.items():
        for name in ("immunreg_http_requests_total", "immunreg_http_request_duration_seconds"):
            assert name in known, (service, name)
