"""Demo data for `make run`: synthetic citizens registered over HTTP, as the call centre would.

Deterministic (fixed seed): the same citizens every time, so loading twice
changes nothing (each request carries an Idempotency-Key, and a 409 for an
already registered national id counts as done).
"""

from __future__ import annotations

import random
from datetime import date, timedelta
from typing import Any

from immunreg.demo import Answer, DemoClient
from immunreg.reference.geography import municipalities
from immunreg.reference.health import conditions, contraindicated
from immunreg.reference.vaccines import vaccine_catalog

from . import jmbg

GIVEN_FEMALE = ["Jelena", "Milica", "Ana", "Dragana", "Marija", "Jovana", "Snežana", "Ivana"]
GIVEN_MALE = ["Nikola", "Marko", "Stefan", "Dragan", "Milan", "Nenad", "Aleksandar", "Zoran"]
FAMILY = ["Jovanović", "Petrović", "Nikolić", "Marković", "Đorđević", "Stojanović", "Ilić"]
GROUPS = [("general", 70), ("chronic_patient", 12), ("health_worker", 8), ("critical_worker", 6)]
GROUPS += [("care_home", 4)]
REFERENCE_DAY = date(2021, 3, 1)  # ages are drawn as of this day, so the data never changes


def _citizen(rng: random.Random, municipality_codes: list[str], today: date) -> dict[str, Any]:
    born = today - timedelta(days=rng.randint(16 * 365, 95 * 365))
    female = rng.random() < 0.52
    serial = rng.randint(500, 999) if female else rng.randint(0, 499)
    national_id = jmbg.make(born, rng.randint(71, 79), serial)
    age = (today - born).days // 365
    group = rng.choices([g for g, _ in GROUPS], weights=[w for _, w in GROUPS])[0]
    if group in ("health_worker", "critical_worker") and not 22 <= age <= 65:
        group = "general"
    candidates = [c for c in sorted(conditions()) if female or c != "pregnancy"]
    declared = rng.sample(candidates, k=rng.choice([0, 0, 0, 1, 1, 2]))
    if group == "general" and any(conditions()[c].priority for c in declared):
        group = "chronic_patient"
    allowed = [
        p
        for p in vaccine_catalog().codes()
        if not contraindicated(p, declared) and vaccine_catalog()[p].min_age <= age
    ]
    preferences = ["any"] if rng.random() < 0.4 or not allowed else rng.sample(allowed, k=1)
    municipality = rng.choice(municipality_codes)
    contact: dict[str, Any] = {"phone": f"06{rng.randint(0, 9)}{rng.randint(1000000, 9999999)}"}
    if rng.random() < 0.6:
        contact["email"] = f"citizen{rng.randint(10000, 99999)}@example.rs"
    return {
        "national_id": national_id,
        "given_name": rng.choice(GIVEN_FEMALE if female else GIVEN_MALE),
        "family_name": rng.choice(FAMILY),
        "birth_date": born.isoformat(),
        "sex": "female" if female else "male",
        "municipality_code": municipality,
        **contact,
        "priority_group": group,
        "conditions": declared,
        "vaccine_preferences": preferences,
        "preferred_municipality_code": municipality if rng.random() < 0.3 else None,
        "consent": {"data_processing": True, "reminders": rng.random() < 0.7},
    }


def _registered(answer: Answer) -> bool:
    """Whether this request registered the citizen (False: it was there already)."""
    if answer.status == 409 or (answer.status == 201 and answer.replayed):
        return False
    if answer.status == 201:
        return True
    raise RuntimeError(f"registration refused a demo citizen: {answer.body!r}")


def load(urls: dict[str, str], *, count: int = 200, seed: int = 2021) -> str:
    """Register `count` synthetic citizens; returns a one-line summary."""
    client = DemoClient(urls["registration"])
    rng = random.Random(seed)
    codes = sorted(municipalities())
    created = existing = 0
    for _ in range(count):
        citizen = _citizen(rng, codes, REFERENCE_DAY)
        answer = client.request(
            "POST",
            "/v1/citizens",
            citizen,
            idempotency_key=f"demo-{seed}-{citizen['national_id']}",
        )
        if _registered(answer):
            created += 1
        else:
            existing += 1
    return f"{created} citizens registered ({existing} were already there)"
