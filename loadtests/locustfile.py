"""The campaign's opening day: a registration surge while the public watches coverage,
and logistics plan where the vaccine goes (an allocation run over the waiting citizens).

Run through `python -m loadtests.national_day` (which starts an isolated stack
and passes the URLs and a token in the environment), not on its own.
"""

from __future__ import annotations

import os
import random
import time
from datetime import date, timedelta

from locust import HttpUser, between, task

from immunreg.reference.geography import municipalities
from services.registration import jmbg

MUNICIPALITIES = sorted(municipalities())
GROUPS = ["general"] * 14 + ["chronic_patient"] * 3 + ["health_worker", "critical_worker"]
PRODUCTS = [
    ["any"],
    ["EU/1/20/1528"],
    ["BBIBP-CorV", "Sputnik-V"],
    ["EU/1/21/1529", "EU/1/20/1507"],
]


class Citizen(HttpUser):
    """Someone registering (through the portal or the call centre)."""

    host = os.environ.get("LOAD_REGISTRATION_URL", "http://127.0.0.1:8081")
    weight = 3
    wait_time = between(0.01, 0.1)

    def on_start(self) -> None:
        self.rng = random.Random()
        self.auth = {"Authorization": f"Bearer {os.environ['LOAD_TOKEN']}"}

    @task
    def register(self) -> None:
        born = date(1930, 1, 1) + timedelta(days=self.rng.randint(0, 365 * 75))
        female = self.rng.random() < 0.52
        serial = self.rng.randint(500, 999) if female else self.rng.randint(0, 499)
        body = {
            "national_id": jmbg.make(born, self.rng.randint(71, 99), serial),
            "given_name": "Milica" if female else "Marko",
            "family_name": "Jovanović",
            "birth_date": born.isoformat(),
            "sex": "female" if female else "male",
            "municipality_code": self.rng.choice(MUNICIPALITIES),
            "phone": f"06{self.rng.randint(10_000_000, 99_999_999)}",
            "priority_group": self.rng.choice(GROUPS),
            "vaccine_preferences": self.rng.choice(PRODUCTS),
            "consent": {"data_processing": True, "reminders": True},
        }
        # A random JMBG can repeat (the space per day is small): 409 is a correct answer.
        with self.client.post(
            "/v1/citizens",
            json=body,
            headers=self.auth,
            name="POST /v1/citizens",
            catch_response=True,
        ) as response:
            if response.status_code in (201, 409):
                response.success()
            else:
                response.failure(f"{response.status_code}: {response.text[:200]}")


class Analyst(HttpUser):
    """The public and the press watching coverage on the dashboard's API."""

    host = os.environ.get("LOAD_PROJECTIONS_URL", "http://127.0.0.1:8086")
    weight = 1
    wait_time = between(0.2, 1.0)

    @task(3)
    def coverage_by_district(self) -> None:
        self.client.get("/v1/coverage?group_by=district", name="GET /v1/coverage")

    @task(1)
    def daily_doses(self) -> None:
        self.client.get("/v1/doses/daily", name="GET /v1/doses/daily")


class Logistician(HttpUser):
    """National logistics asking for an allocation run, and waiting for its proposal."""

    host = os.environ.get("LOAD_SUPPLY_URL", "http://127.0.0.1:8088")
    fixed_count = 1
    wait_time = between(5, 10)

    def on_start(self) -> None:
        self.auth = {"Authorization": f"Bearer {os.environ['LOAD_TOKEN']}"}

    @task
    def allocation_run(self) -> None:
        answer = self.client.post(
            "/v1/allocation-runs",
            json={"horizon_days": 7},
            headers=self.auth,
            name="POST /v1/allocation-runs",
        )
        if answer.status_code != 202:
            return
        run_id = answer.json()["run_id"]
        started = time.perf_counter()
        status = "requested"
        while status == "requested" and time.perf_counter() - started < 60:
            time.sleep(0.5)
            status = self.client.get(
                f"/v1/allocation-runs/{run_id}",
                headers=self.auth,
                name="GET /v1/allocation-runs/{id}",
            ).json()["status"]
        # How long the plan took, accepted to proposed, as Locust's own row.
        self.environment.events.request.fire(
            request_type="PLAN",
            name="allocation run: accepted to proposed",
            response_time=(time.perf_counter() - started) * 1000,
            response_length=0,
            exception=None if status == "proposed" else RuntimeError(status),
            context={},
        )
