"""Unique Vaccination Certificate Identifiers (UVCI) and their checksum.

Format (eHealth Network, "Guidelines on Technical Specifications for EU
Digital COVID Certificates", Volume 2 / Annex 2 "UVCI"), option 3 (opaque):

    URN:UVCI:01:RS:<opaque unique string>#<checksum>

- `01`: version of the UVCI schema; `RS`: the issuing country.
- The opaque part is 128 random bits in RFC 4648 base32 (A-Z, 2-7; 26
  characters): unique without any coordination between replicas.
- The checksum is Luhn mod N (ISO/IEC 7812-1 generalised) over the whole
  string before `#`, upper case, `URN:UVCI:` prefix included, with the
  character set `A-Z 0-9 / :` (N = 38) in that order - the set and order of
  the EU reference implementation. The four Austrian UVCIs in the public EU
  test data validate under it (tests/unit/certificates/test_uvci.py).
"""

from __future__ import annotations

import base64
import re
import secrets

PREFIX = "URN:UVCI:"
VERSION = "01"
CHECKSUM_CHARSET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/:"
_INDEX = {c: i for i, c in enumerate(CHECKSUM_CHARSET)}
UVCI_PATTERN = re.compile(r"URN:UVCI:01:[A-Z]{2}:[A-Z2-7]{26}#[A-Z0-9/:]")


def luhn_mod_n(text: str) -> str:
    """The Luhn mod N check character of `text` (upper case, in CHECKSUM_CHARSET)."""
    n = len(CHECKSUM_CHARSET)
    factor = 2
    total = 0
    for char in reversed(text):
        try:
            addend = factor * _INDEX[char]
        except KeyError:
            raise ValueError(f"{char!r} cannot be part of a UVCI checksum") from None
        factor = 1 if factor == 2 else 2
        total += addend // n + addend % n
    return CHECKSUM_CHARSET[(n - total % n) % n]


def with_checksum(body: str) -> str:
    """`body#<check character>`."""
    return f"{body}#{luhn_mod_n(body.upper())}"


def checksum_ok(uvci: str) -> bool:
    """Whether the character after `#` is the Luhn mod N checksum of what precedes it."""
    body, sep, check = uvci.rpartition("#")
    if not sep or len(check) != 1:
        return False
    try:
        return luhn_mod_n(body.upper()) == check.upper()
    except ValueError:
        return False


def new_uvci(country: str = "RS") -> str:
    """A fresh UVCI of this issuing country."""
    opaque = base64.b32encode(secrets.token_bytes(16)).decode("ascii").rstrip("=")
    return with_checksum(f"{PREFIX}{VERSION}:{country.upper()}:{opaque}")


def is_uvci(value: str) -> bool:
    """Whether `value` has the shape of a UVCI issued here, with a valid checksum."""
    return UVCI_PATTERN.fullmatch(value) is not None and checksum_ok(value)
