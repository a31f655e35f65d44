"""Demo data for `make run`: lots of every product, shipped to a district and ten sites.

Over HTTP as logistics would do it, with a development token. Deterministic
ids (lot numbers, shipment ids, Idempotency-Keys), and a 409 that says "done
already" counts as done, so loading twice changes nothing.
"""

from __future__ import annotations

import hashlib
import json
from datetime import date, timedelta
from typing import Any

from immunreg.demo import DemoClient
from immunreg.http.auth import Role
from immunreg.reference.vaccines import vaccine_catalog

DISTRICT = "WH-RS-00"
SITES = [f"SITE-{n:04d}" for n in range(1, 11)]
LOTS_PER_PRODUCT = 2
VIALS_PER_LOT = 200
VIALS_TO_DISTRICT = 40
VIALS_TO_SITE = 5
DONE_ALREADY = {
    "lot_already_received",
    "shipment_exists",
    "shipment_already_dispatched",
    "shipment_already_received",
}


class _Client:
    """POSTs once each (a deterministic Idempotency-Key), counting what was new."""

    def __init__(self, base: str) -> None:
        self.http = DemoClient(base, role=Role.LOGISTICS)
        self.created = 0
        self.existing = 0

    def post(self, path: str, body: Any = None) -> dict[str, Any] | None:
        """POST once; None when it had been done before."""
        data = b"" if body is None else json.dumps(body, sort_keys=True).encode()
        key = hashlib.sha256(path.encode() + b"\n" + data).hexdigest()[:32]
        answer = self.http.request("POST", path, body, idempotency_key=f"demo-{key}")
        problem = answer.body if isinstance(answer.body, dict) else {}
        if answer.replayed or (answer.status == 409 and problem.get("code") in DONE_ALREADY):
            self.existing += 1
            return None
        if answer.status >= 400:
            raise RuntimeError(f"inventory refused {path}: {problem}")
        self.created += 1
        return problem


def _lot_number(product_index: int, n: int) -> str:
    return f"DEMO-{product_index + 1:02d}{chr(ord('A') + n)}"


def _ship(client: _Client, lot: str, to: str, vials: int, source: str = "WH-NATIONAL") -> None:
    shipment_id = f"demo-{lot}-{to}"
    client.post(
        "/v1/shipments",
        {
            "shipment_id": shipment_id,
            "lot_number": lot,
            "from_location": source,
            "to_location": to,
            "vials": vials,
        },
    )
    client.post(f"/v1/shipments/{shipment_id}/dispatch")
    client.post(f"/v1/shipments/{shipment_id}/receive", {"vials_received": vials})


def load(urls: dict[str, str]) -> str:
    """Receive lots, ship them, open a vial; returns a one-line summary."""
    client = _Client(urls["inventory"])
    expiry = (date.today() + timedelta(days=180)).isoformat()
    first_lots: list[str] = []
    for index, product in enumerate(vaccine_catalog().products.values()):
        for n in range(LOTS_PER_PRODUCT):
            lot = _lot_number(index, n)
            client.post(
                "/v1/lots",
                {
                    "lot_number": lot,
                    "product_code": product.product_code,
                    "manufacturer_code": product.manufacturer_code,
                    "expiry_date": expiry,
                    "vials": VIALS_PER_LOT,
                    "doses_per_vial": product.doses_per_vial,
                    "storage": product.storage,
                },
            )
            _ship(client, lot, DISTRICT, VIALS_TO_DISTRICT)
        first_lots.append(_lot_number(index, 0))
    for site in SITES:
        for lot in first_lots:
            _ship(client, lot, site, VIALS_TO_SITE)
    client.post(f"/v1/sites/{SITES[0]}/stock/{first_lots[0]}/open-vial")
    return (
        f"{len(first_lots) * LOTS_PER_PRODUCT} lots shipped to {DISTRICT} and "
        f"{len(SITES)} sites ({client.created} requests applied, "
        f"{client.existing} were done already)"
    )
