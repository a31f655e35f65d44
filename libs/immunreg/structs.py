"""immunreg's base for msgspec Structs: immutable and keyword-only unless a class says otherwise.

msgspec does not pass `kw_only` down to subclasses, and mypy takes a subclass that
does not repeat `frozen=True` for a mutable one; this base sets both once, for the
runtime (its metaclass) and for the type checker (`dataclass_transform`). A class may
still pass any other msgspec option (`tag`, `omit_defaults`, `forbid_unknown_fields`...).
"""

from __future__ import annotations

from typing import Any

import msgspec
from typing_extensions import dataclass_transform


@dataclass_transform(kw_only_default=True, frozen_default=True, field_specifiers=(msgspec.field,))
class _Defaults(msgspec.StructMeta):
    def __new__(
        mcls, name: str, bases: tuple[type, ...], namespace: dict[str, Any], **options: Any
    ) -> _Defaults:
        options.setdefault("frozen", True)
        options.setdefault("kw_only", True)
        return super().__new__(mcls, name, bases, namespace, **options)


@dataclass_transform(kw_only_default=True, frozen_default=True, field_specifiers=(msgspec.field,))
class Struct(msgspec.Struct, metaclass=_Defaults):
    """A frozen, keyword-only msgspec Struct; subclasses inherit both."""
