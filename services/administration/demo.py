"""Demo data for `make run`: site staff record the doses of booked appointments.

Reads each demo site's appointments from booking and its stock from inventory
(as a site's own systems would), then records a dose for some of them. Dose
ids are derived from citizen, lot, dose number and time, and the time is
fixed per appointment, so loading twice records nothing new.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from datetime import UTC, date, datetime, timedelta
from typing import Any

from immunreg.http.auth import Role, ensure_dev_keys, issue_token
from immunreg.paths import state_dir

SITES = [f"SITE-{n:04d}" for n in range(1, 11)]
DOSES_PER_SITE = 12
# Read models fill from Kafka; a refusal for an unknown citizen or lot means "not yet".
NOT_YET = {"citizen_unknown", "lot_not_at_site"}


def _call(method: str, url: str, token: str, body: Any = None) -> tuple[int, Any]:
    request = urllib.request.Request(
        url,
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def _lot_for(stock: dict[str, Any], product: str) -> str | None:
    usable = [
        lot
        for lot in stock.get("lots", [])
        if lot["product_code"] == product
        and lot["status"] == "active"
        and lot["doses_available"] > 0
    ]
    return usable[0]["lot_number"] if usable else None


def load(urls: dict[str, str]) -> str:
    """Record up to DOSES_PER_SITE doses per demo site; returns a one-line summary."""
    private, _ = ensure_dev_keys(state_dir() / "keys")
    admin = issue_token(private.read_bytes(), Role.ADMIN, subject="demo-loader")
    recorded = already = skipped = 0
    for site in SITES:
        staff = issue_token(private.read_bytes(), Role.SITE_STAFF, site_id=site)
        _, stock = _call("GET", f"{urls['inventory']}/v1/sites/{site}/stock", admin)
        booked: list[dict[str, Any]] = []
        for offset in range(14):
            day = date.today() + timedelta(days=offset)
            status, page = _call(
                "GET", f"{urls['booking']}/v1/sites/{site}/appointments?date={day}", admin
            )
            if status == 200:
                booked += [a for a in page["items"] if a["status"] == "booked"]
            if len(booked) >= DOSES_PER_SITE:
                break
        for n, appointment in enumerate(booked[:DOSES_PER_SITE]):
            lot = _lot_for(stock or {}, appointment["product_code"])
            if lot is None:
                skipped += 1
                continue
            # Walk-ins ahead of their appointment day. A fixed time (today, minute n) keeps
            # the derived dose id stable when the demo is loaded again the same day.
            given = datetime.combine(date.today(), datetime.min.time())
            body = {
                "citizen_id": appointment["citizen_id"],
                "site_id": site,
                "lot_number": lot,
                "product_code": appointment["product_code"],
                "dose_number": appointment["dose_number"],
                "administered_at": (given.replace(tzinfo=UTC) + timedelta(minutes=n)).isoformat(),
                "vaccinator_id": f"{site}-nurse-1",
                "appointment_id": appointment["appointment_id"],
                "injection_site": "left_arm",
            }
            for _ in range(30):
                status, answer = _call("POST", f"{urls['administration']}/v1/doses", staff, body)
                if status == 422 and (answer or {}).get("code") in NOT_YET:
                    time.sleep(1.0)
                    continue
                break
            if status == 201:
                recorded += 1
            elif status == 200:
                already += 1
            else:
                skipped += 1
    return f"{recorded} doses recorded ({already} were already there, {skipped} skipped)"
