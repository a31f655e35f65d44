"""Every context's contract is reachable, unambiguous and has its topic created."""

from __future__ import annotations

from immunreg.contracts import administration, all_topics, booking, certificates, inventory, supply
from immunreg.contracts import registration as reg

CONTEXTS = [
    reg.CONTEXT,
    inventory.CONTEXT,
    booking.CONTEXT,
    administration.CONTEXT,
    certificates.CONTEXT,
    supply.CONTEXT,
]


def test_every_context_topic_and_its_dlq_is_created_by_infra_up() -> None:
    topics = set(all_topics())
    for context in CONTEXTS:
        assert context.topic in topics
        assert f"{context.topic}.dlq" in topics


def test_event_type_names_are_unique_across_contexts() -> None:
    names = [name for c in CONTEXTS for name in c.event_types]
    assert len(names) == len(set(names))


def test_names_and_national_id_are_not_clear_fields_of_registration_events() -> None:
    clear = {f for e in reg.CONTEXT.event_types.values() for f in e.__struct_fields__}
    assert not clear & {"national_id", "jmbg", "given_name", "family_name", "phone", "email"}
