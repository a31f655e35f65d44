"""The Certificate aggregate: one stream per dose, `certificate-<dose_id>`; and the
SigningKey aggregate: one stream per revoked document signer, `signing-key-<kid hex>`.

It holds the dose's certificates in order of issue; at most the last one is
valid. One command, `Reconcile`, says what should hold now - a certificate
with this content, or none (and why) - and `decide` emits what it takes to get
there: issue, revoke, or revoke and re-issue (a correction). Deciding again on
the same facts emits nothing, so redeliveries and replays are harmless.

Pure: the caller prepares the new UVCI, times and key id (and signs only if an
issue was decided). The rules that say what should hold are here too:
`certificate_due` (the revocation rule, over what is known of a dose) and
`issuance` (how long a new certificate is valid).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import msgspec

from immunreg.contracts.certificates import (
    CONTEXT,
    CertificateIssued,
    CertificateRevoked,
    SigningKeyRevoked,
)
from immunreg.contracts.envelope import Event
from immunreg.domain import Aggregate, Conflict, NotFound, RuleViolation
from immunreg.reference.vaccines import vaccine_catalog
from immunreg.structs import Struct

from .hcert import dose_numbers, local_date

STREAM_TYPE = "Certificate"

# Why a certificate stops holding.
DOSE_CORRECTED = "dose_corrected"
DOSE_VOIDED = "dose_voided"
LOT_RECALLED = "lot_recalled"
CITIZEN_ERASED = "citizen_erased"
REVOCATION_REASONS = (DOSE_CORRECTED, DOSE_VOIDED, LOT_RECALLED, CITIZEN_ERASED)

# Why no DCC can be made for a dose at all (counted, never retried: the facts must change).
PRODUCT_OUTSIDE_CATALOG = "product_outside_catalog"
DOSE_NUMBERS_NOT_ENCODABLE = "dose_numbers_not_encodable"


def stream_id(dose_id: str) -> str:
    """The stream of a dose's certificates."""
    return f"certificate-{dose_id}"


class Content(Struct):
    """What a certificate says about the dose, and whose it is (names come from registration)."""

    citizen_id: str
    product_code: str
    dose_number: int  # dn
    total_doses: int  # sd
    vaccination_date: date  # dt


class Issued(Struct):
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


class Issuance(Struct):
    """What a new certificate would be signed with (prepared by the caller)."""

    uvci: str
    issued_at: datetime
    expires_at: datetime
    key_id: str
    country: str


class Reconcile(Struct):
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


class DoseFacts(Struct):
    """What this service knows of a dose and of what surrounds it (its lot, its holder)."""

    dose_id: str
    citizen_id: str
    product_code: str
    dose_number: int
    series_length: int
    administered_at: datetime
    voided: bool = False
    recalled: bool = False  # its lot was recalled
    erased: bool = False  # its holder's personal data was erased


class Due(Struct):
    """What the dose's certificate should say now: `content`, or none and `reason` why.

    `unissuable` names why no DCC can be made for the dose at all (else None).
    """

    content: Content | None
    reason: str = DOSE_CORRECTED
    unissuable: str | None = None


def certificate_due(dose: DoseFacts, zone: ZoneInfo) -> Due:
    """The revocation rule: a voided dose, a recalled lot or an erased holder has no
    certificate (in that order of precedence, which names the revocation's reason);
    nor has a dose a DCC cannot encode (its product outside the EU value sets, dose
    numbers out of range). Otherwise the certificate says what the dose record says,
    dated in `zone`; a change of any of it is a correction (`dose_corrected`)."""
    if dose.voided:
        return Due(content=None, reason=DOSE_VOIDED)
    if dose.recalled:
        return Due(content=None, reason=LOT_RECALLED)
    if dose.erased:
        return Due(content=None, reason=CITIZEN_ERASED)
    if dose.product_code not in vaccine_catalog():
        return Due(content=None, unissuable=PRODUCT_OUTSIDE_CATALOG)
    try:
        dose_number, total_doses = dose_numbers(dose.dose_number, dose.series_length)
    except ValueError:
        return Due(content=None, unissuable=DOSE_NUMBERS_NOT_ENCODABLE)
    return Due(
        content=Content(
            citizen_id=dose.citizen_id,
            product_code=dose.product_code,
            dose_number=dose_number,
            total_doses=total_doses,
            vaccination_date=local_date(dose.administered_at, zone),
        )
    )


def issuance(
    *,
    uvci: str,
    now: datetime,
    validity: timedelta,
    signer_expires: datetime,
    key_id: str,
    country: str,
) -> Issuance:
    """A new certificate's identity and dates: valid for `validity` from now, but never
    beyond its signer's DSC (a verifier would refuse it then); whole seconds, as the CWT
    carries them."""
    return Issuance(
        uvci=uvci,
        issued_at=now.replace(microsecond=0),
        expires_at=min(now + validity, signer_expires).replace(microsecond=0),
        key_id=key_id,
        country=country,
    )


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


# --- document signers -----------------------------------------------------------------

SIGNING_KEY_STREAM_TYPE = "SigningKey"
# Why a DSC is revoked (RFC 5280's reasons that fit a document signer).
SIGNER_REVOCATION_REASONS = (
    "key_compromise",
    "ca_compromise",
    "superseded",
    "cessation_of_operation",
)


def signing_key_stream_id(kid: bytes) -> str:
    """The stream of a document signer (its kid in hex: base64 has `/` and `+`)."""
    return f"signing-key-{kid.hex()}"


class SigningKeyState(msgspec.Struct, kw_only=True):
    """A document signer as its stream tells: revoked or not, and why."""

    kid: str = ""
    revoked: bool = False
    reason: str = ""


class RevokeSigningKey(Struct):
    """Revoke a DSC. The caller says what it knows of the key: whether the trust list
    holds it (`listed`), whether this process signs with it now (`active`)."""

    kid: str
    reason: str
    listed: bool
    active: bool
    country: str | None = None
    source: str = "issuer"


def decide_signer(state: SigningKeyState, command: RevokeSigningKey) -> list[Event]:
    """Revoke a listed DSC once (again: nothing to do); never the one signing now, which
    would make every certificate issued next invalid: rotate first."""
    if command.reason not in SIGNER_REVOCATION_REASONS:
        raise RuleViolation(
            "unknown_revocation_reason",
            f"reason must be one of {', '.join(SIGNER_REVOCATION_REASONS)}",
            field="body.reason",
        )
    if state.revoked:
        return []
    if not command.listed:
        raise NotFound("unknown_signing_key", "no DSC on the trust list has this kid")
    if command.active:
        raise Conflict(
            "signing_key_active",
            "this DSC signs certificates now: rotate to a new one first, then revoke it",
        )
    return [
        SigningKeyRevoked(
            kid=command.kid, country=command.country, source=command.source, reason=command.reason
        )
    ]


def evolve_signer(state: SigningKeyState, event: Event) -> SigningKeyState:
    """Apply a recorded event (never refuses)."""
    if isinstance(event, SigningKeyRevoked):
        return SigningKeyState(kid=event.kid, revoked=True, reason=event.reason)
    return state


SIGNING_KEY: Aggregate[SigningKeyState, RevokeSigningKey] = Aggregate(
    stream_type=SIGNING_KEY_STREAM_TYPE,
    context=CONTEXT,
    initial=SigningKeyState,
    evolve=evolve_signer,
    decide=decide_signer,
    state_type=SigningKeyState,
)
