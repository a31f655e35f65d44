"""Demo data for `make run`: a contract per product with one delivery received against
it, then an allocation run for the coming week, approved as proposed.

Over HTTP as logistics would do it. Deterministic ids (contracts, deliveries, lots,
Idempotency-Keys), and a 409 that says "done already" counts as done, so loading
twice changes nothing but adds one more run.
"""

from __future__ import annotations

import time
from datetime import date, timedelta
from typing import Any

from immunreg.demo import DemoClient, wait_until_quiet
from immunreg.http.auth import Role
from immunreg.reference.vaccines import vaccine_catalog

DONE_ALREADY = {"contract_exists", "delivery_already_received", "lot_already_received"}
DOSES_PER_CONTRACT = 60_000
TRANCHES = 4
DELIVERED_VIALS = 300
PLAN_SECONDS = 60.0


def _post(client: DemoClient, path: str, body: Any, key: str) -> tuple[int, Any]:
    answer = client.request("POST", path, body, idempotency_key=f"demo-supply-{key}")
    problem = answer.body if isinstance(answer.body, dict) else {}
    if answer.status == 409 and problem.get("code") in DONE_ALREADY:
        return 409, None
    if answer.status >= 400:
        raise RuntimeError(f"supply refused {path}: {problem}")
    return answer.status, answer.body


def load(urls: dict[str, str]) -> str:
    """Contracts, deliveries and an approved allocation run; a one-line summary."""
    client = DemoClient(urls["supply"], role=Role.LOGISTICS)
    today = date.today()
    delivered = 0
    for index, product in enumerate(vaccine_catalog().products.values()):
        contract_id = f"DEMO-C{index + 1:02d}"
        _post(
            client,
            "/v1/contracts",
            {
                "contract_id": contract_id,
                "manufacturer_code": product.manufacturer_code,
                "product_code": product.product_code,
                "total_doses": DOSES_PER_CONTRACT,
                "tranches": [
                    {
                        "expected_date": (today + timedelta(days=14 * n)).isoformat(),
                        "doses": DOSES_PER_CONTRACT // TRANCHES,
                    }
                    for n in range(TRANCHES)
                ],
            },
            contract_id,
        )
        status, _ = _post(
            client,
            f"/v1/contracts/{contract_id}/deliveries",
            {
                "delivery_id": f"{contract_id}-D1",
                "lots": [
                    {
                        "lot_number": f"{contract_id}-L1",
                        "expiry_date": (today + timedelta(days=120)).isoformat(),
                        "vials": DELIVERED_VIALS,
                    }
                ],
            },
            f"{contract_id}-D1",
        )
        delivered += status == 201
    wait_until_quiet(urls)  # inventory has received the lots, supply has heard of them
    accepted = client.request(
        "POST",
        "/v1/allocation-runs",
        {"horizon_days": 7},
        idempotency_key=f"demo-supply-run-{time.time_ns()}",
    )
    if accepted.status != 202:
        raise RuntimeError(f"supply refused the allocation run: {accepted.body}")
    run = client.follow(accepted, {"requested"}, PLAN_SECONDS)
    if run["status"] != "proposed":
        return f"{delivered} deliveries received; allocation run {run['run_id']} is {run['status']}"
    _, decided = _post(
        client,
        f"/v1/allocation-runs/{run['run_id']}/approve",
        {"others": "approve"},
        f"approve-{run['run_id']}",
    )
    return (
        f"{delivered} deliveries received; allocation run {run['run_id']} approved "
        f"{len(decided['shipments'])} shipments"
    )
