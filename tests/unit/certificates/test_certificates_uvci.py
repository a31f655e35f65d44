"""UVCIs: format, uniqueness and the Luhn mod N checksum, against real EU test data."""

from __future__ import annotations

import pytest

from services.certificates.uvci import (
    CHECKSUM_CHARSET,
    checksum_ok,
    is_uvci,
    luhn_mod_n,
    new_uvci,
    with_checksum,
)

# The `ci` of the Austrian test certificates (tests/data/dcc/AT and the shared set):
# all four validate under the EU algorithm (charset A-Z 0-9 / :, prefix included).
AUSTRIAN = [
    "URN:UVCI:01:AT:10807843F94AEE0EE5093FBC254BD813#B",
    "URN:UVCI:01:AT:858CC18CFCF5965EF82F60E493349AA5#K",
    "URN:UVCI:01:AT:B5921A35D6A0D696421B3E2462178297#I",
    "URN:UVCI:01:AT:71EE2559DE38C6BF7304FB65A1A451EC#3",
]

# Others in the test data do not: Belgium writes no URN prefix and another check
# scheme; Germany's test data puts the same "W" after two different UVCIs (a placeholder).
NOT_LUHN_MOD_38 = [
    "01BEVLX5DWMA5UJ31EIUVIOZ0AYZ#O",
    "URN:UVCI:01DE/IZ12345A/5CWLU12RNOB9RXSEOP6FG8#W",
]


@pytest.mark.parametrize("uvci", AUSTRIAN)
def test_known_good_checksums_from_the_eu_test_data(uvci: str) -> None:
    assert checksum_ok(uvci)
    body = uvci.rpartition("#")[0]
    assert with_checksum(body) == uvci


@pytest.mark.parametrize("uvci", NOT_LUHN_MOD_38)
def test_other_issuers_checksums_are_not_luhn_mod_38(uvci: str) -> None:
    assert not checksum_ok(uvci)


def test_every_single_character_substitution_is_detected() -> None:
    body, _, check = AUSTRIAN[0].rpartition("#")
    for i in range(len(body)):
        for char in CHECKSUM_CHARSET:
            if char != body[i]:
                assert not checksum_ok(f"{body[:i]}{char}{body[i + 1 :]}#{check}")


def test_adjacent_transpositions_are_detected() -> None:
    body = AUSTRIAN[1].rpartition("#")[0]
    for i in range(len("URN:UVCI:01:AT:"), len(body) - 1):
        if body[i] != body[i + 1]:
            swapped = body[:i] + body[i + 1] + body[i] + body[i + 2 :]
            assert luhn_mod_n(swapped) != luhn_mod_n(body)


def test_new_uvcis_are_well_formed_unique_and_checksummed() -> None:
    made = {new_uvci() for _ in range(2000)}
    assert len(made) == 2000
    for uvci in list(made)[:50]:
        assert uvci.startswith("URN:UVCI:01:RS:")
        assert len(uvci) == len("URN:UVCI:01:RS:") + 26 + 2 <= 80  # the schema's maxLength
        assert is_uvci(uvci) and checksum_ok(uvci)


def test_shape_and_checksum_both_matter() -> None:
    uvci = new_uvci()
    wrong = uvci[:-1] + ("A" if uvci[-1] != "A" else "B")
    assert not is_uvci(wrong)
    assert not is_uvci(uvci.lower())
    assert not is_uvci(uvci + "X")
    assert not checksum_ok("no separator")
    with pytest.raises(ValueError):
        luhn_mod_n("lower case")
