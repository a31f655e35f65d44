"""The hcert payload: valid against the EU DCC JSON schema, EU codes, dose numbering."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import jsonschema
import pytest
from certificates_support import payload

from immunreg.reference.vaccines import vaccine_catalog
from services.certificates.hcert import (
    COVID_19,
    Holder,
    Vaccination,
    build_payload,
    dose_numbers,
    local_date,
)
from services.certificates.uvci import new_uvci


@pytest.mark.parametrize("product_code", vaccine_catalog().codes())
def test_every_catalog_product_makes_a_schema_valid_payload(
    product_code: str, dcc_schema: jsonschema.protocols.Validator
) -> None:
    hcert = payload(product=vaccine_catalog()[product_code])
    assert list(dcc_schema.iter_errors(hcert)) == []
    [v] = hcert["v"]
    product = vaccine_catalog()[product_code]
    assert (v["mp"], v["ma"], v["vp"], v["tg"]) == (
        product.product_code,
        product.manufacturer_code,
        product.prophylaxis_code,
        COVID_19,
    )


def test_the_payload_carries_names_dob_and_the_dose(
    dcc_schema: jsonschema.protocols.Validator,
) -> None:
    uvci = new_uvci()
    hcert = payload(uvci=uvci, dose_number=2, total_doses=2, vaccination_date=date(2021, 7, 3))
    assert hcert["ver"] == "1.3.0"
    assert hcert["nam"] == {"fn": "Petrović", "fnt": "PETROVIC", "gn": "Jelena", "gnt": "JELENA"}
    assert hcert["dob"] == "1985-04-12"
    [v] = hcert["v"]
    assert (v["dn"], v["sd"], v["dt"], v["co"], v["ci"]) == (2, 2, "2021-07-03", "RS", uvci)
    assert v["is"] == "Ministry of Health of the Republic of Serbia"
    assert "t" not in hcert and "r" not in hcert


def test_the_schema_check_can_fail(dcc_schema: jsonschema.protocols.Validator) -> None:
    hcert = payload()
    hcert["nam"]["fnt"] = "Petrović"  # not ICAO
    del hcert["v"][0]["ci"]
    hcert["dob"] = "12.04.1985"
    assert len(list(dcc_schema.iter_errors(hcert))) >= 3


def test_long_and_cyrillic_names_stay_within_the_schema(
    dcc_schema: jsonschema.protocols.Validator,
) -> None:
    holder = Holder(
        family_name="Јовановић-" * 12, given_name="Ђурђија", birth_date=date(1950, 1, 1)
    )
    vaccination = Vaccination(
        product=vaccine_catalog()["BBIBP-CorV"],
        dose_number=3,
        total_doses=3,
        vaccination_date=date(2021, 12, 1),
        country="RS",
        issuer="x" * 200,
        uvci=new_uvci(),
    )
    hcert = build_payload(holder, vaccination)
    assert list(dcc_schema.iter_errors(hcert)) == []
    assert hcert["nam"]["gnt"] == "DURDIJA"
    assert len(hcert["nam"]["fn"]) == 80 and len(hcert["v"][0]["is"]) == 80


@pytest.mark.parametrize(
    ("dose", "series", "expected"),
    [
        (1, 2, (1, 2)),
        (2, 2, (2, 2)),
        (1, 1, (1, 1)),
        (2, 1, (2, 1)),  # booster after a one-dose series
        (3, 2, (3, 3)),  # first booster after two doses
        (4, 2, (4, 4)),  # second booster
        (3, 1, (3, 3)),
    ],
)
def test_dose_numbers_follow_the_eu_encoding_rules(
    dose: int, series: int, expected: tuple[int, int]
) -> None:
    assert dose_numbers(dose, series) == expected


def test_dose_numbers_are_positive() -> None:
    with pytest.raises(ValueError):
        dose_numbers(0, 2)


def test_the_date_of_vaccination_is_serbias() -> None:
    belgrade = ZoneInfo("Europe/Belgrade")
    # 23:30 UTC on 31 May is 01:30 on 1 June in Belgrade (CEST)
    assert local_date(datetime(2021, 5, 31, 23, 30, tzinfo=UTC), belgrade) == date(2021, 6, 1)
    assert local_date(datetime(2021, 5, 31, 12, 0), belgrade) == date(2021, 5, 31)
