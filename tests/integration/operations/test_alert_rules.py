"""The Prometheus alerting rules are valid PromQL and fire when, and only when, they should.

`promtool` (from the PATH, or unpacked from Debian's `prometheus` package) checks
deploy/prometheus/immunreg-rules.yml and runs its unit tests,
deploy/prometheus/immunreg-rules.test.yml: synthetic series for each alert, with the
minute it must start firing, its labels and its rendered annotations.
"""

from __future__ import annotations

import subprocess

import yaml

from immunreg.localinfra.tools import debian_tool
from immunreg.paths import REPO_ROOT

RULES = REPO_ROOT / "deploy" / "prometheus"


def run(*args: str) -> str:
    result = subprocess.run(
        [str(debian_tool("prometheus", "promtool")), *args],
        cwd=RULES,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_the_rules_are_valid_promql() -> None:
    groups = yaml.safe_load((RULES / "immunreg-rules.yml").read_text())["groups"]
    rules = sum(len(group["rules"]) for group in groups)
    assert f"SUCCESS: {rules} rules found" in run("check", "rules", "immunreg-rules.yml")


def test_each_alert_fires_on_its_situation_after_its_window_and_not_on_a_near_miss() -> None:
    assert "SUCCESS" in run("test", "rules", "immunreg-rules.test.yml")
