"""Event evolution: old consumers read new events, new consumers read old ones.

Three generations of one event, as three releases of the contracts would define it:
v1 `lot`; v2 renames it to `lot_number` (keeping `lot` filled, the rename rule)
and adds `site_id`; v3 adds `dose_number`, which v1 and v2 data lack.
"""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec
import pytest

from immunreg.contracts import (
    Context,
    Event,
    UpcastError,
    Upcasters,
    administration,
    booking,
    certificates,
    inventory,
    registration,
)
from immunreg.contracts.topics import TOPIC_NAMESPACE_VARIABLE


# Nested, so one module holds three generations; msgspec would tag them by qualified
# name, so each names its tag as the contracts of its release did.
class V1:
    class DoseGiven(Event, frozen=True, tag="DoseGiven"):
        dose_id: str
        lot: str


class V2:
    class DoseGiven(Event, frozen=True, tag="DoseGiven"):
        schema_version: ClassVar[int] = 2
        dose_id: str
        lot_number: str
        lot: str  # kept and filled until every consumer reads lot_number
        site_id: str | None = None


class V3:
    class DoseGiven(Event, frozen=True, tag="DoseGiven"):
        schema_version: ClassVar[int] = 3
        dose_id: str
        lot_number: str
        lot: str
        dose_number: int
        site_id: str | None = None


def lot_renamed(data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "lot_number": data["lot"]}


def dose_number_added(data: dict[str, Any]) -> dict[str, Any]:
    # Before v3 only first doses were recorded through this event.
    return {**data, "dose_number": 1}


def upcasters(*, through: int = 3) -> Upcasters:
    steps = Upcasters()
    steps.add("DoseGiven", 1, lot_renamed)
    if through >= 3:
        steps.add("DoseGiven", 2, dose_number_added)
    return steps


CTX_V1 = Context("doses", [V1.DoseGiven])
CTX_V2 = Context("doses", [V2.DoseGiven], upcasters(through=2))
CTX_V3 = Context("doses", [V3.DoseGiven], upcasters())


def envelope_of(ctx: Context, event: Event) -> Any:
    return ctx.envelope(event, stream_id="d-1", stream_type="Dose", version=1)


def test_a_v1_consumer_reads_a_v2_event_with_a_field_added_and_a_field_renamed() -> None:
    published = envelope_of(
        CTX_V2, V2.DoseGiven(dose_id="d-1", lot_number="L-7", lot="L-7", site_id="s-3")
    )
    assert published.schema_version == 2

    event = CTX_V1.read(published)

    assert event == V1.DoseGiven(dose_id="d-1", lot="L-7")


def test_a_v2_consumer_reads_a_v1_event_through_the_upcaster() -> None:
    stored = envelope_of(CTX_V1, V1.DoseGiven(dose_id="d-1", lot="L-7"))
    assert stored.schema_version == 1

    event = CTX_V2.read(stored)

    assert event == V2.DoseGiven(dose_id="d-1", lot_number="L-7", lot="L-7")


def test_the_chain_takes_v1_through_v2_to_v3() -> None:
    v1 = envelope_of(CTX_V1, V1.DoseGiven(dose_id="d-1", lot="L-7"))
    v2 = envelope_of(CTX_V2, V2.DoseGiven(dose_id="d-2", lot_number="L-8", lot="L-8"))

    assert CTX_V3.read(v1) == V3.DoseGiven(
        dose_id="d-1", lot_number="L-7", lot="L-7", dose_number=1
    )
    assert CTX_V3.read(v2) == V3.DoseGiven(
        dose_id="d-2", lot_number="L-8", lot="L-8", dose_number=1
    )


def test_decode_without_the_envelope_takes_the_version_and_finds_the_type_in_the_data() -> None:
    data = CTX_V1.encode(V1.DoseGiven(dose_id="d-1", lot="L-7"))

    assert CTX_V3.decode(data, schema_version=1).dose_number == 1  # type: ignore[attr-defined]
    # No version: data written by this code, decoded as it is.
    with pytest.raises(msgspec.ValidationError, match="lot_number"):
        CTX_V3.decode(data)


def test_current_data_never_reaches_an_upcaster() -> None:
    calls: list[int] = []

    def counted(data: dict[str, Any]) -> dict[str, Any]:
        calls.append(1)
        return lot_renamed(data)

    steps = Upcasters()
    steps.add("DoseGiven", 1, counted)
    ctx = Context("doses", [V2.DoseGiven], steps)
    current = envelope_of(ctx, V2.DoseGiven(dose_id="d-1", lot_number="L", lot="L"))

    ctx.read(current)
    assert calls == []
    ctx.read(envelope_of(CTX_V1, V1.DoseGiven(dose_id="d-1", lot="L")))
    assert calls == [1]


def test_a_gap_in_the_chain_is_refused_when_the_context_is_built() -> None:
    steps = Upcasters()
    steps.add("DoseGiven", 2, dose_number_added)

    with pytest.raises(UpcastError, match="DoseGiven is at v3 but has no upcaster from v1"):
        Context("doses", [V3.DoseGiven], steps)


def test_an_upcaster_for_a_version_that_is_not_older_or_an_unknown_event_is_refused() -> None:
    with pytest.raises(UpcastError, match="from v1, but v1 is the newest"):
        Context("doses", [V1.DoseGiven], upcasters(through=2))
    stray = Upcasters()
    stray.add("DoseGivn", 1, lot_renamed)
    with pytest.raises(UpcastError, match="DoseGivn, which is not an event here"):
        Context("doses", [V1.DoseGiven], stray)
    with pytest.raises(ValueError, match="already has an upcaster from v1"):
        upcasters().add("DoseGiven", 1, lot_renamed)


def test_a_version_no_upcaster_reads_is_a_clear_error() -> None:
    ancient = CTX_V1.encode(V1.DoseGiven(dose_id="d-1", lot="L-7"))

    with pytest.raises(UpcastError, match="no upcaster for DoseGiven from v0"):
        CTX_V3.decode(ancient, schema_version=0, type_name="DoseGiven")


def test_a_version_newer_than_the_reader_knows_is_read_as_it_is() -> None:
    """The producer's promise (additive changes, renames keep the old field) makes
    newer data readable by older code; a v4 that broke it would fail validation."""
    v4 = msgspec.json.encode(
        {
            "type": "DoseGiven",
            "dose_id": "d-1",
            "lot_number": "L-7",
            "lot": "L-7",
            "dose_number": 2,
            "route": "intramuscular",
        }
    )
    assert CTX_V3.decode(v4, schema_version=4, type_name="DoseGiven").dose_number == 2  # type: ignore[attr-defined]
    assert CTX_V1.decode(v4, schema_version=4, type_name="DoseGiven") == V1.DoseGiven(
        dose_id="d-1", lot="L-7"
    )
    broken = msgspec.json.encode({"type": "DoseGiven", "dose_id": "d-1", "lot_number": "L-7"})
    with pytest.raises(msgspec.ValidationError, match="lot"):
        CTX_V1.decode(broken, schema_version=4, type_name="DoseGiven")


def test_an_upcaster_cannot_change_the_event_type() -> None:
    steps = Upcasters()
    steps.add("DoseGiven", 1, lambda data: {**lot_renamed(data), "type": "Other"})
    ctx = Context("doses", [V2.DoseGiven], steps)

    event = ctx.read(envelope_of(CTX_V1, V1.DoseGiven(dose_id="d-1", lot="L")))

    assert isinstance(event, V2.DoseGiven)


def test_renamed_contexts_keep_their_upcasters(monkeypatch: pytest.MonkeyPatch) -> None:
    # Without a run's namespace (the suite sets one): the names production uses.
    monkeypatch.delenv(TOPIC_NAMESPACE_VARIABLE, raising=False)
    private = CTX_V3.renamed("t-doses")

    assert private.topic == "t-doses.events.v1"
    assert private.upcasters is CTX_V3.upcasters


@pytest.mark.parametrize(
    "context",
    [
        registration.CONTEXT,
        booking.CONTEXT,
        inventory.CONTEXT,
        administration.CONTEXT,
        certificates.CONTEXT,
    ],
    ids=lambda c: c.name,
)
def test_every_published_event_lets_older_consumers_ignore_new_fields(context: Context) -> None:
    """The backward half of the rule rests on msgspec ignoring unknown fields."""
    for event_type in context.event_types.values():
        assert not event_type.__struct_config__.forbid_unknown_fields, event_type.__name__
