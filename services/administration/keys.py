"""Administration's per-citizen keys: the health details of its events (override,
correction and void reasons; an adverse event's symptoms, outcome and description)
are sealed under a data key of that citizen alone (`citizen_keys`), so that deleting
the key on CitizenErased leaves every copy on Kafka and in the event store unreadable.

A key is made by the first command that seals something for the citizen and kept in
that command's transaction (`DetailsSealer.new_key`); every dose command holds the
citizen's row lock first, so two commands never make two keys, and an erasure (which
takes the same row) waits for the command or comes before it (then nothing is sealed:
`DetailsErased`). No other service gets the key: the details are administration's own.
"""

from __future__ import annotations

import msgspec

from immunreg.contracts.administration import (
    AdverseEventDetails,
    AdverseEventReported,
    DoseAdministered,
    DoseCorrected,
    DoseNotes,
    DoseVoided,
)
from immunreg.contracts.common import Sealed
from immunreg.eventstore.database import Connection
from immunreg.sealing import CitizenKey, UnsealError, seal, unseal

from .domain import DetailsErased

_encoder = msgspec.json.Encoder()
_notes = msgspec.json.Decoder(DoseNotes)
_adverse = msgspec.json.Decoder(AdverseEventDetails)


class DetailsSealer:
    """Seals one citizen's details under their key, making the key on first use.

    The domain calls it (`domain.Seal`) only for what an event will carry; the command
    keeps `new_key` in its transaction when one was made. For an erased citizen it
    refuses (410): nothing may be written that no key opens, nor a key made again.
    """

    def __init__(self, citizen_id: str, key: CitizenKey | None, *, erased: bool) -> None:
        self.citizen_id = citizen_id
        self.key = key
        self.erased = erased
        self.new_key: CitizenKey | None = None

    def __call__(self, details: DoseNotes | AdverseEventDetails) -> Sealed:
        if self.erased:
            raise DetailsErased()
        if self.key is None:
            self.key = self.new_key = CitizenKey.new()
        return seal(
            self.key.key,
            _encoder.encode(details),
            self.citizen_id.encode(),
            key_id=self.key.key_id,
        )


def _open(key: CitizenKey | None, citizen_id: str, sealed: Sealed) -> bytes | None:
    if key is None or key.key_id != sealed.key_id:
        return None
    try:
        return unseal(key.key, sealed, citizen_id.encode())
    except UnsealError:
        return None


def dose_notes(
    event: DoseAdministered | DoseCorrected | DoseVoided, key: CitizenKey | None
) -> DoseNotes:
    """The notes of a dose event: opened with the citizen's key (empty once it is gone),
    or an older event's clear fields."""
    if event.details is None:
        return DoseNotes(
            override_reason=None if isinstance(event, DoseVoided) else event.override_reason,
            reason=None if isinstance(event, DoseAdministered) else event.reason or None,
        )
    plain = _open(key, event.citizen_id, event.details)
    return DoseNotes() if plain is None else _notes.decode(plain)


def adverse_details(event: AdverseEventReported, key: CitizenKey | None) -> AdverseEventDetails:
    """What an adverse event was: opened with the citizen's key (nothing once it is
    gone), or an older event's clear fields."""
    if event.details is None:
        return AdverseEventDetails(
            symptoms=event.symptoms, outcome=event.outcome, description=event.description
        )
    plain = _open(key, event.citizen_id, event.details)
    return AdverseEventDetails(symptoms=[], outcome="") if plain is None else _adverse.decode(plain)


# --- the key table ---------------------------------------------------------------------------


async def fetch_citizen_key(conn: Connection, citizen_id: str) -> CitizenKey | None:
    """The citizen's data key; None before anything was sealed for them, or once erased."""
    row = await conn.fetchrow(
        "SELECT key_id, key FROM citizen_keys WHERE citizen_id = $1", citizen_id
    )
    return None if row is None else CitizenKey(row["key_id"], bytes(row["key"]))


async def store_citizen_key(conn: Connection, citizen_id: str, key: CitizenKey) -> None:
    """Keep a key just made (the row lock on the citizen makes it the only one)."""
    await conn.execute(
        "INSERT INTO citizen_keys (citizen_id, key_id, key) VALUES ($1, $2, $3)",
        citizen_id,
        key.key_id,
        key.key,
    )


async def destroy_citizen_key(conn: Connection, citizen_id: str) -> None:
    """Delete the citizen's key: whatever it sealed can never be read again."""
    await conn.execute("DELETE FROM citizen_keys WHERE citizen_id = $1", citizen_id)
