"""Demo data for `make run`: site staff record the doses of booked appointments.

Reads each demo site's appointments from booking and its stock from inventory
(as a site's own systems would), then records a dose for some of them. Dose
ids are derived from citizen, lot, dose number and time, and the time is
fixed per appointment, so loading twice records nothing new.
"""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

from immunreg.demo import DemoClient
from immunreg.http.auth import Role

SITES = [f"SITE-{n:04d}" for n in range(1, 11)]
DOSES_PER_SITE = 12
# Read models fill from Kafka; a refusal for an unknown citizen or lot means "not yet".
NOT_YET = {"citizen_unknown", "lot_not_at_site"}


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
    inventory = DemoClient(urls["inventory"])
    booking = DemoClient(urls["booking"])
    recorded = already = skipped = 0
    for site in SITES:
        staff = DemoClient(urls["administration"], role=Role.SITE_STAFF, site_id=site)
        stock = inventory.request("GET", f"/v1/sites/{site}/stock").body
        booked: list[dict[str, Any]] = []
        for offset in range(14):
            day = date.today() + timedelta(days=offset)
            page = booking.request("GET", f"/v1/sites/{site}/appointments?date={day}")
            if page.status == 200:
                booked += [a for a in page.body["items"] if a["status"] == "booked"]
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
                answer = staff.request("POST", "/v1/doses", body)
                if answer.status == 422 and (answer.body or {}).get("code") in NOT_YET:
                    time.sleep(1.0)
                    continue
                break
            if answer.status == 201:
                recorded += 1
            elif answer.status == 200:
                already += 1
            else:
                skipped += 1
    return f"{recorded} doses recorded ({already} were already there, {skipped} skipped)"
