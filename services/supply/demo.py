"""Demo data for `make run`: a contract per product, one delivery, an allocation run."""

from __future__ import annotations

from immunreg.demo import DemoClient


def load(urls: dict[str, str]) -> str:
    """Placeholder replaced below."""
    DemoClient(urls["supply"])
    return ""
