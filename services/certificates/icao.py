# Cyrillic letters that look like Latin ones are the point of this module:
# ruff: noqa: RUF001, RUF002
"""Names as the machine-readable zone writes them: ICAO Doc 9303 Part 3 transliteration.

The EU DCC carries each name twice: as written (`fn`, `gn`) and standardised
(`fnt`, `gnt`: only `A`-`Z` and the filler `<`). This module implements the
transliteration tables ICAO Doc 9303 Part 3 (section 6) recommends:

- Latin letters with diacritics lose them (`Č Ć` -> `C`, `Š` -> `S`, `Ž` -> `Z`,
  `Đ` -> `D`), except those the table spells out (`Ä Æ` -> `AE`, `Ö Ø Œ` -> `OE`,
  `Ü` -> `UE`, `Å` -> `AA`, `ß` -> `SS`, `Þ` -> `TH`, `Ĳ` -> `IJ`);
- Cyrillic by its own table (`Ж` -> `ZH`, `Ч` -> `CH`, `Ш` -> `SH`, `Ц` -> `TS`,
  `Х` -> `KH`, `Ђ` -> `D`, `Ћ` -> `C`, `Џ` -> `DZ`, `Љ` -> `LJ`, `Њ` -> `NJ`,
  `Ј` -> `J`, `Ю` -> `IU`, `Я` -> `IA`, `Ь` omitted, ...). Note the table is not
  the Serbian Latin alphabet: `Жарко` becomes `ZHARKO` while `Žarko` becomes
  `ZARKO`; `fn`/`gn` keep the name exactly as registered;
- spaces and hyphens become `<`; apostrophes and other punctuation are
  dropped; a run of fillers collapses to one, none at either end;
- anything else is reduced to its base letter when Unicode can decompose it,
  and dropped otherwise.

Pure code, no I/O (tests/unit/certificates/test_icao.py).
"""

from __future__ import annotations

import unicodedata

MAX_LENGTH = 80  # the DCC schema's maxLength for fnt/gnt
FILLER = "<"

# Latin characters whose ICAO form is not just the base letter.
_LATIN: dict[str, str] = {
    "Ä": "AE",
    "Æ": "AE",
    "Å": "AA",
    "Ö": "OE",
    "Ø": "OE",
    "Œ": "OE",
    "Ü": "UE",
    "ß": "SS",
    "ẞ": "SS",
    "Þ": "TH",
    "Ð": "D",
    "Đ": "D",
    "Ħ": "H",
    "Ĳ": "IJ",
    "Ŀ": "L",
    "Ł": "L",
    "Ŋ": "N",
    "Ŧ": "T",
    "ı": "I",
    "ĸ": "K",
}

# ICAO Doc 9303 Part 3, transliteration of Cyrillic characters (upper case).
_CYRILLIC: dict[str, str] = {
    "А": "A",
    "Б": "B",
    "В": "V",
    "Г": "G",
    "Ґ": "G",
    "Д": "D",
    "Ђ": "D",
    "Ѓ": "G",
    "Є": "IE",
    "Е": "E",
    "Ё": "E",
    "Ж": "ZH",
    "З": "Z",
    "Ѕ": "DZ",
    "И": "I",
    "І": "I",
    "Ї": "I",
    "Й": "I",
    "Ј": "J",
    "К": "K",
    "Л": "L",
    "Љ": "LJ",
    "М": "M",
    "Н": "N",
    "Њ": "NJ",
    "О": "O",
    "П": "P",
    "Р": "R",
    "С": "S",
    "Т": "T",
    "Ћ": "C",
    "Ќ": "K",
    "У": "U",
    "Ў": "U",
    "Ф": "F",
    "Х": "KH",
    "Ц": "TS",
    "Ч": "CH",
    "Џ": "DZ",
    "Ш": "SH",
    "Щ": "SHCH",
    "Ъ": "IE",
    "Ы": "Y",
    "Ь": "",
    "Э": "E",
    "Ю": "IU",
    "Я": "IA",
}

_SEPARATORS = frozenset(" -\u2010\u2011\u2012\u2013\u2014\t\n,")


def _letter(char: str) -> str:
    """The ICAO form of one character ('' when it has none)."""
    upper = char.upper() if char != "ß" else "ß"
    if "A" <= upper <= "Z":
        return upper
    if upper in _LATIN:
        return _LATIN[upper]
    if upper in _CYRILLIC:
        return _CYRILLIC[upper]
    base = "".join(c for c in unicodedata.normalize("NFKD", upper) if not unicodedata.combining(c))
    if base != upper:
        return "".join(_letter(c) for c in base)
    return ""


def transliterate(name: str) -> str:
    """`name` standardised for the MRZ and the DCC (`^[A-Z<]*$`, at most 80 characters)."""
    out: list[str] = []
    for char in unicodedata.normalize("NFC", name):
        if char in _SEPARATORS:
            if out and out[-1] != FILLER:
                out.append(FILLER)
            continue
        out.append(_letter(char))
    return "".join(out).strip(FILLER)[:MAX_LENGTH].rstrip(FILLER)
