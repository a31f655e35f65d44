"""The JMBG validator: a table of real-format numbers, and properties of the check digit."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.registration import jmbg


def with_check_digit(first_twelve: str) -> str:
    return first_twelve + str(jmbg.check_digit(first_twelve))


def test_hand_checked_examples() -> None:
    # 0101990710008: digits a..l = 0 1 0 1 9 9 0 7 1 0 0 0
    #   7(0+0) + 6(1+7) + 5(0+1) + 4(1+0) + 3(9+0) + 2(9+0) = 0+48+5+4+27+18 = 102
    #   102 mod 11 = 3, m = 11 - 3 = 8 -> K = 8
    male = jmbg.parse("0101990710008")
    assert male.birth_date == date(1990, 1, 1)
    assert (male.region, male.serial, male.sex) == ("71", 0, "male")
    # 1505005715006: digits 1 5 0 5 0 0 5 7 1 5 0 0
    #   7(1+5) + 6(5+7) + 5(0+1) + 4(5+5) + 3(0+0) + 2(0+0) = 42+72+5+40 = 159
    #   159 mod 11 = 5, m = 6 -> K = 6
    female = jmbg.parse("1505005715006")
    assert female.birth_date == date(2005, 5, 15)
    assert (female.serial, female.sex) == (500, "female")


def test_a_remainder_of_0_or_1_gives_check_digit_0() -> None:
    # m = 10 (remainder 1) and m = 11 (remainder 0) both give K = 0.
    firsts = [f"01019907{s:04d}"[:12] for s in range(1000)]
    by_remainder = {jmbg.weighted_remainder(f): f for f in firsts}
    for remainder in (0, 1):
        first = by_remainder[remainder]
        assert jmbg.check_digit(first) == 0
        assert jmbg.is_valid(first + "0")
    assert jmbg.check_digit(by_remainder[2]) == 9


VALID = [
    ("0101990710008", date(1990, 1, 1), "male"),
    ("1505005715006", date(2005, 5, 15), "female"),
    (with_check_digit("290200071499"), date(2000, 2, 29), "male"),  # 2000 is a leap year
    (with_check_digit("311299980500"), date(1999, 12, 31), "female"),
    (with_check_digit("010190080999"), date(1900, 1, 1), "female"),
    (with_check_digit("010109910123"), date(2099, 1, 1), "male"),  # century rule, not age
    (with_check_digit("290292471000"), date(1924, 2, 29), "male"),
]


@pytest.mark.parametrize(("value", "born", "sex"), VALID)
def test_valid_numbers(value: str, born: date, sex: str) -> None:
    parsed = jmbg.parse(value)
    assert parsed.birth_date == born
    assert parsed.sex == sex
    assert parsed.value == value


INVALID = [
    ("0101990710009", "check digit"),  # K should be 8
    ("0101990710080", "check digit"),  # two digits swapped
    (with_check_digit("310299071000"), "not a date"),  # 31.02.1999
    (with_check_digit("290299971000"), "not a date"),  # 29.02.1999: not a leap year
    (with_check_digit("290290071000"), "not a date"),  # 29.02.1900: not a leap year either
    (with_check_digit("001299071000"), "not a date"),  # day 0
    (with_check_digit("011399071000"), "not a date"),  # month 13
    (with_check_digit("010118071000"), "year digits"),  # 180: neither 9xx nor 0xx
    (with_check_digit("010150071000"), "year digits"),  # 500
    (with_check_digit("010180071000"), "year digits"),  # 800
    ("010199071000", "13 digits"),
    ("01019907100088", "13 digits"),
    ("010199071000a", "13 digits"),
    ("0101990 710008", "13 digits"),
    ("٠١٠١٩٩٠٧١٠٠٠٨", "13 digits"),  # Arabic-Indic digits are digits to str.isdigit
    ("", "13 digits"),
]


@pytest.mark.parametrize(("value", "reason"), INVALID)
def test_invalid_numbers(value: str, reason: str) -> None:
    with pytest.raises(jmbg.InvalidJmbg, match=reason):
        jmbg.parse(value)
    assert not jmbg.is_valid(value)


def test_sex_follows_the_serial() -> None:
    assert jmbg.parse(jmbg.make(date(1980, 6, 1), 71, 499)).sex == "male"
    assert jmbg.parse(jmbg.make(date(1980, 6, 1), 71, 500)).sex == "female"


def test_make_refuses_what_a_jmbg_cannot_encode() -> None:
    with pytest.raises(ValueError, match="1900-2099"):
        jmbg.make(date(1899, 12, 31), 71, 0)
    with pytest.raises(ValueError, match="serial"):
        jmbg.make(date(1980, 1, 1), 71, 1000)


births = st.dates(min_value=date(1900, 1, 1), max_value=date(2099, 12, 31))
regions = st.integers(0, 99)
serials = st.integers(0, 999)


@given(births, regions, serials)
def test_generated_numbers_are_valid_and_decode_back(born: date, region: int, serial: int) -> None:
    parsed = jmbg.parse(jmbg.make(born, region, serial))
    assert parsed.birth_date == born
    assert (int(parsed.region), parsed.serial) == (region, serial)


@given(births, regions, serials, st.integers(0, 12), st.integers(1, 9))
def test_a_single_changed_digit_is_caught_unless_the_check_digit_collides(
    born: date, region: int, serial: int, position: int, shift: int
) -> None:
    """Every weight is 2..7 and 11 is prime, so changing one of the first twelve digits
    always changes the remainder mod 11. The check digit still matches only when the old
    and the new remainder are both 0 or 1 (both give K = 0); then the date may also be
    valid. A changed check digit itself never matches."""
    value = jmbg.make(born, region, serial)
    digits = list(value)
    digits[position] = str((int(digits[position]) + shift) % 10)
    mutant = "".join(digits)
    if position == 12:
        assert not jmbg.is_valid(mutant)
        return
    old, new = jmbg.weighted_remainder(value[:12]), jmbg.weighted_remainder(mutant[:12])
    assert old != new
    collides = old in (0, 1) and new in (0, 1)
    checksum_ok = jmbg.check_digit(mutant[:12]) == int(mutant[12])
    assert checksum_ok == collides
    if not collides:
        with pytest.raises(jmbg.InvalidJmbg):
            jmbg.parse(mutant)
