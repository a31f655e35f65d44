"""The Certificate aggregate: one stream per dose, `certificate-<dose_id>`.

It holds the dose's certificates in order of issue; at most the last one is
valid. One command, `Reconcile`, says what should hold now - a certificate
with this content, or none (and why) - and `decide` emits what it takes to get
there: issue, revoke, or revoke and re-issue (a correction). Deciding again on
the same facts emits nothing, so redeliveries and replays are harmless.

Pure: the caller prepares the new UVCI, times and key id (and signs only if an
issue was decided).
"""

from __future__ import annotations

from datetime import date, datetime

import msgspec

from immunreg.contracts.certificates import CONTEXT, CertificateIssued, CertificateRevoked
from immunreg.contracts.envelope import Event
from immunreg.domain import Aggregate

STREAM_TYPE = "Certificate"

# Why a certificate stops holding.
DOSE_CORRECTED = "dose_corrected"
DOSE_VOIDED = "dose_voided"
LOT_RECALLED = "lot_recalled"
CITIZEN_ERASED = "citizen_erased"
REVOCATION_REASONS = (DOSE_CORRECTED, DOSE_VOIDED, LOT_RECALLED, CITIZEN_ERASED)


def stream_id(dose_id: str) -> str:
    """The stream of a dose's certificates."""
    return f"certificate-{dose_id}"


class Content(msgspec.Struct, frozen=True, kw_only=True):
    """What a certificate says about the dose, and whose it is (names come from registration)."""

    citizen_id: str
    product_code: str
    dose_number: int  # dn
    total_doses: int  # sd
    vaccination_date: date  # dt


class Issued(msgspec.Struct, frozen=True, kw_only=True):
    """One certificate of the dose."""

    uvci: str
    content: Content
    valid: bool = True


class CertificateState(msgspec.Struct, kw_only=True):
    """The dose's certificates, oldest first."""

    dose_id: str = ""
    citizen_id: str = ""
    certificates: list[Issued] = []

    @property
    def current(self) -> Issued | None:
        """The valid certificate, if one holds."""
        if self.certificates and self.certificates[-1].valid:
            return self.certificates[-1]
        return None


class Issuance(msgspec.Struct, frozen=True, kw_only=True):
    """What a new certificate would be signed with (prepared by the caller)."""

    uvci: str
    issued_at: datetime
    expires_at: datetime
    key_id: str
    country: str


class Reconcile(msgspec.Struct, frozen=True, kw_only=True):
    """Make the dose's certificates match the facts.

    `want`: the content a valid certificate should have, or None when none may
    hold; `reason`: why the current one goes (when it does); `issuance`: None
    while the holder's names cannot be read yet (the issue then waits, and a
    current certificate that no longer matches the facts is revoked meanwhile).
    """

    dose_id: str
    citizen_id: str
    want: Content | None
    reason: str
    issuance: Issuance | None = None


def decide(state: CertificateState, command: Reconcile) -> list[Event]:
    """Issue, revoke or replace so that the stream matches `command`."""
    current = state.current
    want = command.want
    if want is None:
        return [] if current is None else [_revoked(command, current, command.reason)]
    if current is not None and current.content == want:
        return []
    new = command.issuance
    events: list[Event] = []
    if current is not None:  # it says something that is no longer true
        superseded_by = new.uvci if new is not None else None
        events.append(_revoked(command, current, DOSE_CORRECTED, superseded_by))
    if new is None:
        return events  # pending until the holder's names can be read
    supersedes = state.certificates[-1].uvci if state.certificates else None
    events.append(
        CertificateIssued(
            uvci=new.uvci,
            citizen_id=want.citizen_id,
            dose_id=command.dose_id,
            dose_number=want.dose_number,
            total_doses=want.total_doses,
            product_code=want.product_code,
            vaccination_date=want.vaccination_date,
            issued_at=new.issued_at,
            expires_at=new.expires_at,
            key_id=new.key_id,
            country=new.country,
            supersedes=supersedes,
        )
    )
    return events


def _revoked(
    command: Reconcile, current: Issued, reason: str, superseded_by: str | None = None
) -> CertificateRevoked:
    return CertificateRevoked(
        uvci=current.uvci,
        citizen_id=current.content.citizen_id,
        dose_id=command.dose_id,
        reason=reason,
        superseded_by=superseded_by,
    )


def evolve(state: CertificateState, event: Event) -> CertificateState:
    """Apply a recorded event (never refuses)."""
    if isinstance(event, CertificateIssued):
        content = Content(
            citizen_id=event.citizen_id,
            product_code=event.product_code,
            dose_number=event.dose_number,
            total_doses=event.total_doses,
            vaccination_date=event.vaccination_date or event.issued_at.date(),
        )
        return CertificateState(
            dose_id=event.dose_id,
            citizen_id=event.citizen_id,
            certificates=[*state.certificates, Issued(uvci=event.uvci, content=content)],
        )
    if isinstance(event, CertificateRevoked):
        certificates = [
            msgspec.structs.replace(c, valid=False) if c.uvci == event.uvci else c
            for c in state.certificates
        ]
        return CertificateState(
            dose_id=state.dose_id, citizen_id=state.citizen_id, certificates=certificates
        )
    return state


CERTIFICATE: Aggregate[CertificateState, Reconcile] = Aggregate(
    stream_type=STREAM_TYPE,
    context=CONTEXT,
    initial=CertificateState,
    evolve=evolve,
    decide=decide,
    state_type=CertificateState,
    snapshot_every=50,
)
