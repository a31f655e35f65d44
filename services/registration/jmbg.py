"""The Serbian unique master citizen number (JMBG): `DDMMYYYRRBBBK`, pure.

- `DDMM`: day and month of birth; `YYY`: the last three digits of the year,
  `9xx` for 1900-1999 and `0xx` for 2000-2099 (anything else is refused).
- `RR`: the region of registration (not checked: foreign and historic codes abound).
- `BBB`: serial; 000-499 for males, 500-999 for females.
- `K`: check digit over the first twelve digits `a..l`:
  `m = 11 - ((7(a+g) + 6(b+h) + 5(c+i) + 4(d+j) + 3(e+k) + 2(f+l)) mod 11)`,
  `K = m` when `m <= 9`, else 0.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Literal

WEIGHTS = (7, 6, 5, 4, 3, 2, 7, 6, 5, 4, 3, 2)
_DIGITS = re.compile(r"[0-9]{13}")
FEMALE_SERIALS_FROM = 500


class InvalidJmbg(ValueError):
    """Not a valid JMBG; the message says why, in words a citizen understands."""


@dataclass(frozen=True)
class Jmbg:
    """A valid JMBG and what it encodes."""

    value: str
    birth_date: date
    region: str
    serial: int

    @property
    def sex(self) -> Literal["female", "male"]:
        """The sex the serial encodes."""
        return "female" if self.serial >= FEMALE_SERIALS_FROM else "male"


def weighted_remainder(first_twelve: str) -> int:
    """`sum(weight * digit) mod 11` over the first twelve digits."""
    return sum(w * int(d) for w, d in zip(WEIGHTS, first_twelve, strict=True)) % 11


def check_digit(first_twelve: str) -> int:
    """The check digit `K` for the first twelve digits."""
    m = 11 - weighted_remainder(first_twelve)
    return m if m <= 9 else 0


def birth_year(yyy: str) -> int | None:
    """The full year for the three year digits (9xx: 1900s, 0xx: 2000s), or None."""
    if yyy[0] == "9":
        return 1000 + int(yyy)
    if yyy[0] == "0":
        return 2000 + int(yyy)
    return None


def parse(value: str) -> Jmbg:
    """Parse a JMBG; InvalidJmbg says what is wrong with it."""
    if not _DIGITS.fullmatch(value):
        raise InvalidJmbg("a JMBG is exactly 13 digits")
    if int(value[12]) != check_digit(value[:12]):
        raise InvalidJmbg("the check digit does not match (a mistyped digit?)")
    year = birth_year(value[4:7])
    if year is None:
        raise InvalidJmbg(
            f"year digits {value[4:7]} name no year (9xx is 1900-1999, 0xx is 2000-2099)"
        )
    try:
        born = date(year, int(value[2:4]), int(value[0:2]))
    except ValueError:
        raise InvalidJmbg(
            f"{value[0:2]}.{value[2:4]}.{year} is not a date in the calendar"
        ) from None
    return Jmbg(value=value, birth_date=born, region=value[7:9], serial=int(value[9:12]))


def is_valid(value: str) -> bool:
    """Whether `value` is a valid JMBG."""
    try:
        parse(value)
    except InvalidJmbg:
        return False
    return True


def make(birth_date: date, region: int, serial: int) -> str:
    """The valid JMBG for a birth date (1900-2099), region (0-99) and serial (0-999)."""
    if not 1900 <= birth_date.year <= 2099:
        raise ValueError("a JMBG encodes years 1900-2099 only")
    if not (0 <= region <= 99 and 0 <= serial <= 999):
        raise ValueError("region is 0-99 and serial 0-999")
    first = f"{birth_date:%d%m}{birth_date.year % 1000:03d}{region:02d}{serial:03d}"
    return first + str(check_digit(first))
