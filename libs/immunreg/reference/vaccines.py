"""The vaccine catalog: products, their EU DCC codes and their dosing rules."""

from __future__ import annotations

from functools import cache
from importlib import resources

import msgspec

from immunreg.structs import Struct


class VaccineProduct(Struct):
    """One product and the rules for using it."""

    product_code: str
    name: str
    manufacturer_code: str
    manufacturer_name: str
    prophylaxis_code: str
    platform: str
    doses_per_vial: int
    opened_vial_hours: int
    series_length: int
    min_interval_days: int
    max_interval_days: int
    min_age: int
    max_age: int | None = None
    booster_min_days_after_series: int | None = None
    storage: str = "refrigerated"


class _CatalogFile(msgspec.Struct):
    products: list[VaccineProduct]


class VaccineCatalog:
    """Products by code."""

    def __init__(self, products: list[VaccineProduct]) -> None:
        self.products = {p.product_code: p for p in products}

    def __contains__(self, code: object) -> bool:
        return code in self.products

    def get(self, code: str) -> VaccineProduct | None:
        """The product with that EU code, if known."""
        return self.products.get(code)

    def __getitem__(self, code: str) -> VaccineProduct:
        return self.products[code]

    def codes(self) -> list[str]:
        """Every product code, in catalog order."""
        return list(self.products)


@cache
def vaccine_catalog() -> VaccineCatalog:
    """The catalog shipped in reference/data/vaccines.json."""
    raw = resources.files("immunreg.reference").joinpath("data/vaccines.json").read_bytes()
    return VaccineCatalog(msgspec.json.decode(raw, type=_CatalogFile).products)
