"""Demo data for `make run`: vaccination sites, then one scheduling run, over HTTP.

SITE-0001..SITE-0010 are in Belgrade, where inventory's demo ships stock to them (it
loads after this one, so the first run mostly reports `no_stock`; the nightly run, or
another POST /v1/scheduling/runs, books once stock has arrived). Thirty more sites go
to the largest other municipalities. Deterministic: defining a site again with the same
data changes nothing.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from immunreg.http.auth import Role, ensure_dev_keys, issue_token
from immunreg.paths import state_dir
from immunreg.reference.geography import municipalities
from immunreg.reference.vaccines import vaccine_catalog

BELGRADE = "RS-00"


def _call(method: str, url: str, token: str, body: Any) -> Any:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method=method,
    )
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        raise RuntimeError(f"booking refused demo data: {error.read()!r}") from error


def sites() -> list[dict[str, Any]]:
    """Forty sites: ten in Belgrade, thirty in the largest other municipalities."""
    by_size = sorted(municipalities().values(), key=lambda m: (-m.population, m.code))
    belgrade = [m for m in by_size if m.district_code == BELGRADE][:10]
    others = [m for m in by_size if m.district_code != BELGRADE][:30]
    products = vaccine_catalog().codes()
    result = []
    for n, muni in enumerate([*belgrade, *others], start=1):
        offered = [products[(n + k) % len(products)] for k in range(3)]
        result.append(
            {
                "site_id": f"SITE-{n:04d}",
                "name": f"Dom zdravlja {muni.name}",
                "municipality_code": muni.code,
                "address": f"{muni.name}, punkt {n}",
                "opening_hours": "08:00-20:00",
                "daily_capacity": {code: 40 + 10 * k for k, code in enumerate(offered)},
            }
        )
    return result


def load(urls: dict[str, str]) -> str:
    """Define the demo sites and run the scheduler once; returns a one-line summary."""
    private, _ = ensure_dev_keys(state_dir() / "keys")
    token = issue_token(private.read_bytes(), Role.ADMIN, subject="demo-loader")
    base = urls["booking"]
    for site in sites():
        body = {k: v for k, v in site.items() if k != "site_id"}
        _call("PUT", f"{base}/v1/sites/{site['site_id']}", token, body)
    summary = _call("POST", f"{base}/v1/scheduling/runs", token, {"horizon_days": 7})
    return (
        f"{len(sites())} sites defined; scheduling run booked {summary['booked']}, "
        f"waiting {summary['waiting']}"
    )
