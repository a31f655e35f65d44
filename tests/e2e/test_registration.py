"""Registration as a client sees it: every service running as its own process."""

from __future__ import annotations

import random
from datetime import date
from typing import TYPE_CHECKING, Any

from e2e_http import send

from services.registration import demo, jmbg

if TYPE_CHECKING:  # tests/e2e is not a package; the fixture is found by pytest
    from conftest import Stack


def call(
    method: str, url: str, headers: dict[str, str], body: Any = None
) -> tuple[int, Any, dict[str, str]]:
    answer = send(method, url, headers, body)
    return answer.status, answer.json(), answer.headers


def test_register_read_back_and_withdraw(stack: Stack) -> None:
    base = stack.urls["registration"]
    rng = random.Random()
    born = date(1950 + rng.randint(0, 50), rng.randint(1, 12), rng.randint(1, 28))
    national_id = jmbg.make(born, 71, rng.randint(0, 499))
    body = {
        "national_id": national_id,
        "given_name": "Nikola",
        "family_name": "Tesla",
        "birth_date": born.isoformat(),
        "sex": "male",
        "municipality_code": "70092",
        "email": "nikola@example.rs",
        "priority_group": "general",
        "conditions": ["chronic_heart"],
        "vaccine_preferences": ["any"],
        "consent": {"data_processing": True},
    }
    status, created, _ = call("POST", f"{base}/v1/citizens", stack.token("admin"), body)
    assert status == 201, created
    citizen_id = created["citizen_id"]
    url = f"{base}/v1/citizens/{citizen_id}"

    me = stack.token("citizen", citizen_id=citizen_id)
    status, record, _ = call("GET", url, me)
    assert status == 200
    assert (record["national_id"], record["family_name"]) == (national_id, "Tesla")
    assert record["status"] == "active"

    # Not booked or vaccinated at SITE-0001: site staff there say why they look.
    staff = stack.token("site_staff", site_id="SITE-0001")
    status, refused, _ = call("GET", url, staff)
    assert (status, refused["code"]) == (403, "citizen_not_at_site")
    status, view, _ = call("GET", url, {**staff, "Access-Reason": "registering at the desk"})
    assert status == 200 and "national_id" not in view and view["conditions"] == ["chronic_heart"]

    status, problem, _ = call("POST", f"{base}/v1/citizens", stack.token("admin"), body)
    assert status == 409 and citizen_id in problem["detail"]

    status, _, _ = call("DELETE", url, me)
    assert status == 204
    status, record, _ = call("GET", url, me)
    assert status == 200 and record["status"] == "withdrawn"


def test_demo_data_loads_and_loading_again_changes_nothing(stack: Stack) -> None:
    first = demo.load(stack.urls, count=20, seed=7)
    again = demo.load(stack.urls, count=20, seed=7)
    assert first.startswith("20 citizens registered"), first
    assert again.startswith("0 citizens registered (20 were already there)"), again
