"""Serbian's two scripts: the citizens' portal and the dashboard speak both.

Serbian Latin and Cyrillic map letter for letter (three Latin digraphs, lj, nj and dž,
are one Cyrillic letter each), so words written once in Latin are shown in Cyrillic by
transliteration. `{name}` placeholders and the abbreviations in KEEP, read letter by
letter in Latin, stay as they are.
"""

from __future__ import annotations

import re

KEEP = ("QR", "PNG", "JMBG", "CSV", "immunreg", "public_health", "token", "role")

_DIGRAPHS = {"Lj": "Љ", "LJ": "Љ", "lj": "љ", "Nj": "Њ", "NJ": "Њ", "nj": "њ",
             "Dž": "Џ", "DŽ": "Џ", "dž": "џ"}  # fmt: skip
_LETTERS = dict(
    zip(
        "ABVGDĐEŽZIJKLMNOPRSTĆUFHCČŠabvgdđežzijklmnoprstćufhcčš",
        "АБВГДЂЕЖЗИЈКЛМНОПРСТЋУФХЦЧШабвгдђежзијклмнопрстћуфхцчш",
        strict=True,
    )
)
_PROTECTED = re.compile(r"(\{[a-z_]+\}|--role|\b(?:" + "|".join(KEEP) + r")\b)")


def to_cyrillic(text: str) -> str:
    """Serbian Latin script to Cyrillic, leaving placeholders and KEEP words alone."""
    out: list[str] = []
    for index, piece in enumerate(_PROTECTED.split(text)):
        if index % 2:
            out.append(piece)
            continue
        i = 0
        while i < len(piece):
            pair = piece[i : i + 2]
            if pair in _DIGRAPHS:
                out.append(_DIGRAPHS[pair])
                i += 2
            else:
                out.append(_LETTERS.get(piece[i], piece[i]))
                i += 1
    return "".join(out)


_LATIN = re.compile(r"[A-Za-zČĆŠŽĐčćšžđ]")


def latin_left(text: str) -> list[str]:
    """The Latin letters in Cyrillic `text` outside placeholders and KEEP words (a word
    missed by transliteration, or typed in Latin into a Cyrillic string)."""
    return _LATIN.findall(_PROTECTED.sub("", text))
