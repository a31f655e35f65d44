"""Text a registry can keep: no NUL and no other control characters.

JSON may carry them (`"\\u0000"`), msgspec decodes them faithfully, and PostgreSQL then
refuses the row mid-transaction (a 500). Checking every string of a decoded request up
front turns that into a 422 naming the field, before anything is stored. (Lone surrogates
never get this far: msgspec refuses them as malformed JSON.)
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

import msgspec

from immunreg.http.problems import FieldError

# C0 controls except tab, line feed and carriage return (free text may hold those), and DEL.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def text_problem(value: str) -> str | None:
    """Why `value` cannot be stored as text, or None if it can."""
    if _CONTROL.search(value):
        return "must not contain control characters"
    return None


def text_errors(value: Any, field: str) -> list[FieldError]:
    """One error per string anywhere in `value` (a decoded request part) that cannot be stored."""
    return [FieldError(field=where, reason=why) for where, why in _walk(value, field)]


def _walk(value: Any, field: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        why = text_problem(value)
        if why is not None:
            yield field, why
    elif isinstance(value, msgspec.Struct):
        for name in value.__struct_fields__:
            yield from _walk(getattr(value, name), f"{field}.{name}")
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(key, str) and text_problem(key) is not None:
                yield f"{field}.{key!r}", "keys must not contain control characters"
            yield from _walk(item, f"{field}.{key}")
    elif isinstance(value, list | tuple | set | frozenset):
        for index, item in enumerate(value):
            yield from _walk(item, f"{field}[{index}]")
