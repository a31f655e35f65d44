"""certificates.events.v1: vaccination certificates issued and revoked."""

from __future__ import annotations

from datetime import datetime

from immunreg.contracts.envelope import Context, Event


class CertificateIssued(Event, frozen=True, kw_only=True):
    uvci: str
    citizen_id: str
    dose_id: str
    dose_number: int
    total_doses: int
    product_code: str
    issued_at: datetime
    expires_at: datetime
    key_id: str
    supersedes: str | None = None


class CertificateRevoked(Event, frozen=True, kw_only=True):
    uvci: str
    citizen_id: str
    reason: str


CONTEXT = Context("certificates", [CertificateIssued, CertificateRevoked])
