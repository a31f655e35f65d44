"""certificates.events.v1: vaccination certificates issued and revoked.

One stream per dose (`certificate-<dose_id>`): the dose's certificate, and the
ones that replaced it after a correction. Events carry no names: the signed
certificate (which does) is kept by the certificates service only.

One stream per citizen (`holder-key-<citizen_id>`): the public keys certificates
offered registration for that citizen's data key (`HolderKeyOffered`). One stream per
batch of keys made for no citizen yet (`holder-key-pool-certificates-<id>`,
`HolderKeysPooled`), which registration wraps a new citizen's data key to.

One stream per revoked document signer (`signing-key-<kid, hex>`): a DSC whose
certificates no longer verify.
"""

from __future__ import annotations

from datetime import date, datetime

from immunreg.contracts.common import HolderKeyOffered, HolderKeysPooled
from immunreg.contracts.envelope import Context, Event


class CertificateIssued(Event):
    """An EU DCC vaccination certificate was signed for a dose (dose n of m)."""

    uvci: str
    citizen_id: str
    dose_id: str
    dose_number: int
    total_doses: int
    product_code: str
    issued_at: datetime
    expires_at: datetime
    key_id: str  # base64 of the signing key's kid (first 8 bytes of SHA-256 of its DSC)
    supersedes: str | None = None  # the UVCI this certificate replaces
    # Added with defaults (evolution rules):
    vaccination_date: date | None = None  # `dt`, the date in Serbia's time zone
    country: str = "RS"  # `co`


class CertificateRevoked(Event):
    """A certificate no longer holds: dose_corrected (see superseded_by), dose_voided,
    lot_recalled or citizen_erased. Its UVCI hash is on the published revocation list."""

    uvci: str
    citizen_id: str
    reason: str
    # Added with defaults (evolution rules):
    dose_id: str = ""
    superseded_by: str | None = None


class SigningKeyRevoked(Event):
    """A document signer (DSC) was revoked: nothing it signed verifies any more.
    `reason`: key_compromise, ca_compromise, superseded or cessation_of_operation."""

    kid: str  # base64 of the DSC's kid (first 8 bytes of SHA-256 of its DER)
    country: str | None  # the DSC's country
    source: str  # "issuer" (a DSC of this registry) or "trusted" (another issuer's)
    reason: str


CONTEXT = Context(
    "certificates",
    [CertificateIssued, CertificateRevoked, SigningKeyRevoked, HolderKeyOffered, HolderKeysPooled],
)
