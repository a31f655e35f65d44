"""Demo data for `make run`: vaccination sites, then one scheduling run, over HTTP.

SITE-0001..SITE-0010 are in Belgrade, where inventory's demo ships stock to them (it
loads before this one, so the run books against that stock). Thirty more sites go
to the largest other municipalities. Deterministic: defining a site again with the same
data changes nothing.
"""

from __future__ import annotations

from typing import Any

from immunreg.demo import Answer, DemoClient
from immunreg.reference.geography import municipalities
from immunreg.reference.vaccines import vaccine_catalog

BELGRADE = "RS-00"
RUN_SECONDS = 300  # the scheduling run books in the background; the loader waits


def _ok(answer: Answer) -> Any:
    if answer.status >= 400:
        raise RuntimeError(f"booking refused demo data: {answer.body!r}")
    return answer.body


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
    client = DemoClient(urls["booking"])
    for site in sites():
        body = {k: v for k, v in site.items() if k != "site_id"}
        _ok(client.request("PUT", f"/v1/sites/{site['site_id']}", body))
    accepted = client.request("POST", "/v1/scheduling/runs", {"horizon_days": 7})
    _ok(accepted)
    run = client.follow(accepted, {"queued", "running"}, RUN_SECONDS)
    return (
        f"{len(sites())} sites defined; scheduling run {run['status']}: booked "
        f"{run['booked']}, waiting {run['waiting']}"
    )
