"""Municipalities, districts and census populations (2022 census, Serbia)."""

from __future__ import annotations

import csv
import io
from functools import cache
from importlib import resources

import msgspec


class Municipality(msgspec.Struct, frozen=True):
    """A municipality (or city municipality) with its district and population."""

    code: str
    name: str
    district_code: str
    district_name: str
    population: int


class District(msgspec.Struct, frozen=True):
    """An administrative district (or the City of Belgrade)."""

    code: str
    name: str
    population: int
    geojson_name: str


class AgeBand(msgspec.Struct, frozen=True):
    """A five-year census age band ('85+' is open-ended)."""

    label: str
    low: int
    high: int | None
    male: int
    female: int
    population: int


def _rows(name: str) -> list[dict[str, str]]:
    text = resources.files("immunreg.reference").joinpath(f"data/{name}").read_text("utf-8")
    return list(csv.DictReader(io.StringIO(text)))


@cache
def municipalities() -> dict[str, Municipality]:
    """Municipalities by official code (matični broj opštine)."""
    return {
        r["municipality_code"]: Municipality(
            code=r["municipality_code"],
            name=r["municipality_name"],
            district_code=r["district_code"],
            district_name=r["district_name"],
            population=int(r["population_2022"]),
        )
        for r in _rows("serbia_municipalities.csv")
    }


@cache
def districts() -> dict[str, District]:
    """Districts by ISO 3166-2:RS code."""
    return {
        r["district_code"]: District(
            code=r["district_code"],
            name=r["district_name"],
            population=int(r["population_2022"]),
            geojson_name=r["geojson_name"],
        )
        for r in _rows("serbia_districts.csv")
    }


@cache
def age_bands() -> list[AgeBand]:
    """The census age bands, youngest first."""
    bands = []
    for r in _rows("serbia_age_bands_by_sex.csv"):
        label = r["age_band"]
        if not label[0].isdigit():
            continue  # the total row
        low, _, high = label.replace("+", "-").partition("-")
        bands.append(
            AgeBand(
                label=label,
                low=int(low),
                high=int(high) if high else None,
                male=int(r["male_2022"]),
                female=int(r["female_2022"]),
                population=int(r["population_2022"]),
            )
        )
    return bands


def age_band_of(age: int) -> str:
    """The label of the census band an age falls in."""
    for band in age_bands():
        if age >= band.low and (band.high is None or age <= band.high):
            return band.label
    raise ValueError(f"no band for age {age}")
