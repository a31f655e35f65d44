"""A tiny context used only by the tests: tallies that count up."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from immunreg.contracts.envelope import Context, Event
from immunreg.domain import Aggregate, RuleViolation


class Counted(Event, frozen=True):
    amount: int
    seq: int = 0


class Poisoned(Event, frozen=True):
    """A consumer in the tests fails on this one every time."""

    reason: str = "poison"


class Add(msgspec.Struct, frozen=True):
    amount: int
    seq: int = 0


class TallyState(msgspec.Struct, frozen=True):
    total: int = 0
    count: int = 0


def decide(state: TallyState, command: Add) -> Sequence[Event]:
    if command.amount <= 0:
        raise RuleViolation("positive_amount", "amount must be positive", field="amount")
    return [Counted(amount=command.amount, seq=command.seq)]


def evolve(state: TallyState, event: Event) -> TallyState:
    if isinstance(event, Counted):
        return TallyState(total=state.total + event.amount, count=state.count + 1)
    return state


def tally_context(name: str) -> Context:
    return Context(name, [Counted, Poisoned])


def tally_aggregate(context: Context, snapshot_every: int = 100) -> Aggregate[TallyState, Add]:
    return Aggregate(
        stream_type="Tally",
        context=context,
        initial=TallyState,
        evolve=evolve,
        decide=decide,
        state_type=TallyState,
        snapshot_every=snapshot_every,
    )
