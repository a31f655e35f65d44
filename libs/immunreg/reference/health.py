"""Health conditions and priority groups (configurable lists)."""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from importlib import resources

import msgspec


class Condition(msgspec.Struct, frozen=True):
    """A declarable health condition and the products it rules out."""

    code: str
    name: str
    contraindicates: list[str] = []
    priority: bool = False


class PriorityGroup(msgspec.Struct, frozen=True):
    """A priority group; a lower rank is booked first."""

    code: str
    name: str
    rank: int


class _Conditions(msgspec.Struct):
    conditions: list[Condition]


class _Groups(msgspec.Struct):
    groups: list[PriorityGroup]


def _read(name: str) -> bytes:
    return resources.files("immunreg.reference").joinpath(f"data/{name}").read_bytes()


@cache
def conditions() -> dict[str, Condition]:
    """Conditions by code."""
    return {
        c.code: c
        for c in msgspec.json.decode(_read("conditions.json"), type=_Conditions).conditions
    }


@cache
def priority_groups() -> dict[str, PriorityGroup]:
    """Priority groups by code."""
    return {
        g.code: g for g in msgspec.json.decode(_read("priority_groups.json"), type=_Groups).groups
    }


def contraindicated(product_code: str, condition_codes: list[str]) -> list[str]:
    """The declared conditions that rule this product out."""
    known = conditions()
    return [c for c in condition_codes if c in known and product_code in known[c].contraindicates]


def ruled_out_by(condition_codes: Iterable[str]) -> list[str]:
    """The product codes any of these conditions rules out, sorted: what booking needs of
    the conditions, published in clear while the conditions themselves stay sealed."""
    known = conditions()
    return sorted({p for c in condition_codes if c in known for p in known[c].contraindicates})
