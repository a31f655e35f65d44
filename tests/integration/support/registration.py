"""A valid registration body, for tests that register citizens over HTTP."""

from __future__ import annotations

import random
from datetime import date
from typing import Any

from services.registration import jmbg


def registration_body(rng: random.Random) -> dict[str, Any]:
    """A first registration of a random national id (born 1950-2005)."""
    born = date(1950, 1, 1).fromordinal(rng.randint(711858, 732311))  # 1950..2005
    return {
        "national_id": jmbg.make(born, rng.randint(0, 99), rng.randint(500, 999)),
        "given_name": "Milica",
        "family_name": "Jovanović",
        "birth_date": born.isoformat(),
        "sex": "female",
        "municipality_code": "70092",
        "email": "milica@example.rs",
        "priority_group": "general",
        "vaccine_preferences": ["any"],
        "consent": {"data_processing": True},
    }
