"""The health certificate payload (EU DCC schema 1.3.0) of one vaccination.

Pure: names, birth date and the dose in; the JSON-shaped dict the CWT claim
-260/1 carries out. Codes come from the vaccine catalog (EU value sets: `mp`
medicinal product, `ma` marketing-authorisation holder, `vp` vaccine type).
`IssuerConfig` says who issues (`is`, `co`), for how long, and in which time zone
a dose's date (`dt`) is counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from immunreg.config import Settings, setting
from immunreg.reference.vaccines import VaccineProduct

from .icao import MAX_LENGTH, transliterate

SCHEMA_VERSION = "1.3.0"
COVID_19 = "840539006"  # `tg`, disease or agent targeted (SNOMED CT)
MAX_ISSUER_LENGTH = 80

SERVICE = "certificates"  # the settings' prefix (CERTIFICATES_<NAME>)
DEFAULT_ISSUER = "Ministry of Health of the Republic of Serbia"
DEFAULT_COUNTRY = "RS"
DEFAULT_VALIDITY_DAYS = 365
DEFAULT_TIMEZONE = "Europe/Belgrade"


@dataclass(frozen=True)
class IssuerConfig:
    """Who issues, for how long, and in which time zone a dose's date is counted."""

    issuer: str = DEFAULT_ISSUER  # `is`
    country: str = DEFAULT_COUNTRY  # `co`, the CWT `iss` and the UVCI's country
    validity: timedelta = timedelta(days=DEFAULT_VALIDITY_DAYS)
    zone: ZoneInfo = field(default_factory=lambda: ZoneInfo(DEFAULT_TIMEZONE))

    @classmethod
    def from_settings(cls, settings: Settings) -> IssuerConfig:
        """`CERTIFICATES_ISSUER_NAME`, `_COUNTRY`, `_VALIDITY_DAYS`, `_TIMEZONE`."""

        def get(name: str, default: str) -> str:
            return settings.extra.get(name) or setting(name, SERVICE) or default

        return cls(
            issuer=get("ISSUER_NAME", DEFAULT_ISSUER),
            country=get("COUNTRY", DEFAULT_COUNTRY).upper(),
            validity=timedelta(days=int(get("VALIDITY_DAYS", str(DEFAULT_VALIDITY_DAYS)))),
            zone=ZoneInfo(get("TIMEZONE", DEFAULT_TIMEZONE)),
        )


@dataclass(frozen=True)
class Holder:
    """Whom the certificate names."""

    family_name: str
    given_name: str
    birth_date: date


@dataclass(frozen=True)
class Vaccination:
    """What the certificate says about the dose."""

    product: VaccineProduct
    dose_number: int
    total_doses: int
    vaccination_date: date
    country: str
    issuer: str
    uvci: str


def dose_numbers(dose_number: int, series_length: int) -> tuple[int, int]:
    """(`dn`, `sd`) per the EU encoding rules: within the primary series `n/m`; a booster
    after a one-dose series `2/1`; any other dose beyond the series `n/n` (3/3, 4/4)."""
    if dose_number < 1 or series_length < 1:
        raise ValueError("dose number and series length are positive")
    if dose_number <= series_length:
        return dose_number, series_length
    if series_length == 1 and dose_number == 2:
        return 2, 1
    return dose_number, dose_number


def local_date(moment: datetime, zone: ZoneInfo) -> date:
    """The calendar date of `moment` where the dose was given (naive means UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo("UTC"))
    return moment.astimezone(zone).date()


def _name(value: str) -> str:
    return " ".join(value.split())[:MAX_LENGTH]


def build_payload(holder: Holder, vaccination: Vaccination) -> dict[str, Any]:
    """The `hcert` payload (`ver`, `nam`, `dob`, `v`) as the DCC schema wants it."""
    names: dict[str, str] = {}
    family = _name(holder.family_name)
    given = _name(holder.given_name)
    if family:
        names["fn"] = family
        names["fnt"] = transliterate(family)
    if given:
        names["gn"] = given
        names["gnt"] = transliterate(given)
    product = vaccination.product
    return {
        "ver": SCHEMA_VERSION,
        "nam": names,
        "dob": holder.birth_date.isoformat(),
        "v": [
            {
                "tg": COVID_19,
                "vp": product.prophylaxis_code,
                "mp": product.product_code,
                "ma": product.manufacturer_code,
                "dn": vaccination.dose_number,
                "sd": vaccination.total_doses,
                "dt": vaccination.vaccination_date.isoformat(),
                "co": vaccination.country,
                "is": vaccination.issuer[:MAX_ISSUER_LENGTH],
                "ci": vaccination.uvci,
            }
        ],
    }
