"""Event evolution: upcasters bring an older event's JSON up to its current version.

The rule, for every event on a `<context>.events.v1` topic:

- Forward (old data, new reader) is the reader's job. Each change that needs
  more than a default gets one upcaster per step, registered for
  `(event type, from_version)`: it turns the raw JSON object of version n into
  version n + 1. `Context.decode` chains them (v1 -> v2 -> v3) before msgspec
  sees the data, for consumers and for the event store alike.
- Backward (new data, old reader) is the producer's job: a consumer built with
  the previous contracts must still decode the new JSON. msgspec ignores
  unknown fields (no event sets `forbid_unknown_fields`), so a field added with
  a default costs nothing. A rename is published as "add the new field, keep
  filling the old one" until every consumer has upgraded; only then may a
  later version drop the old field. There is no downcaster code: an old
  consumer cannot run code written after it.
- So data newer than the reader knows is decoded as it is (tolerant reader).
  A change no old reader can follow (a field removed or retyped) needs a new
  topic, `<context>.events.v2`, not a new schema version.

Upcasters work on plain dicts so they never depend on a Struct that no longer
exists; they must be pure and keep the `type` tag.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


class UpcastError(ValueError):
    """An event cannot be brought to the version this code reads (a missing step)."""


class Upcasters:
    """One context's upcasters, by (event type, version they read)."""

    def __init__(self) -> None:
        self._steps: dict[tuple[str, int], Upcaster] = {}

    def register(self, type_name: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
        """Decorator: `fn(data_at_from_version) -> data_at_from_version_plus_one`."""

        def add(step: Upcaster) -> Upcaster:
            self.add(type_name, from_version, step)
            return step

        return add

    def add(self, type_name: str, from_version: int, step: Upcaster) -> None:
        """Register one step; a second step for the same version is a mistake."""
        if from_version < 1:
            raise ValueError(f"schema versions start at 1, not {from_version}")
        if (type_name, from_version) in self._steps:
            raise ValueError(f"{type_name} already has an upcaster from v{from_version}")
        self._steps[(type_name, from_version)] = step

    def check(self, current: Mapping[str, int]) -> None:
        """Fail at import, not at 3 a.m.: every event's chain from v1 is complete,
        and no step targets an unknown event or a version past the current one."""
        for type_name, version in self._steps:
            if type_name not in current:
                raise UpcastError(f"upcaster for {type_name}, which is not an event here")
            if version >= current[type_name]:
                raise UpcastError(
                    f"upcaster for {type_name} from v{version}, but v{current[type_name]} "
                    "is the newest version"
                )
        for type_name, newest in current.items():
            missing = [v for v in range(1, newest) if (type_name, v) not in self._steps]
            if missing:
                raise UpcastError(
                    f"{type_name} is at v{newest} but has no upcaster from "
                    + ", ".join(f"v{v}" for v in missing)
                )

    def upcast(
        self, type_name: str, data: dict[str, Any], from_version: int, to_version: int
    ) -> dict[str, Any]:
        """Apply each step from `from_version` up to `to_version` (a no-op when equal)."""
        for version in range(from_version, to_version):
            step = self._steps.get((type_name, version))
            if step is None:
                raise UpcastError(
                    f"no upcaster for {type_name} from v{version} "
                    f"(the event was written at v{from_version}, this code reads v{to_version})"
                )
            data = step(dict(data))
            data["type"] = type_name  # the tag is the event's identity, not the step's to change
        return data
