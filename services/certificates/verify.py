"""Verifying an `HC1:` certificate: decode, find the signer's key, check the signature,
that the signer (DSC) is not revoked, that the CWT issuer is the DSC's country, that the
signer was valid when the certificate was issued, the signer's key usage, revocation and
expiry.

Pure and offline: the trust list, the revocation check and the clock are
arguments, so a test can verify the EU test certificates at their own
validation clock. `POST /v1/verify` passes the service's trust list (its own
DSCs and the configured foreign ones, each checked against a configured CSCA
when the list was built: keys.build_trust_list) and its revocation list.

The clock rule: `now` is the verifier's own clock and is trusted; `at` is a
moment a caller asks about and is not. Expiry is checked at the later of the
two, so a caller may ask "is it still valid next month?" but can never move
the clock back to make an expired certificate valid.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from .cose import Malformed, decode_claims, decode_hc1, jsonable, signature_ok
from .keys import TrustList

CERTIFICATE_TYPES = ("v", "t", "r")  # vaccination, test, recovery


class Reason(StrEnum):
    """Why a certificate is (not) valid, in the order the checks run."""

    OK = "ok"
    MALFORMED = "malformed"  # not HC1 / Base45 / zlib / COSE / CWT / DCC
    UNKNOWN_KEY = "unknown_key"  # no kid, or a kid not on the trust list
    BAD_SIGNATURE = "bad_signature"  # the signature does not verify with that key
    SIGNER_REVOKED = "signer_revoked"  # the DSC that signed it is revoked
    ISSUER_MISMATCH = "issuer_mismatch"  # the CWT issuer is not the DSC's country
    SIGNER_NOT_VALID = "signer_not_valid"  # issued outside the DSC's validity period
    WRONG_KEY_USAGE = "wrong_key_usage"  # the DSC may not sign this type of certificate
    REVOKED = "revoked"  # its UVCI hash is on the revocation list
    EXPIRED = "expired"  # past the CWT expiry


@dataclass(frozen=True)
class Verification:
    """The verdict, and what the certificate says (when it could be decoded)."""

    valid: bool
    reason: Reason
    detail: str = ""
    kid: bytes | None = None
    issuer: str | None = None
    issued_at: datetime | None = None
    expires_at: datetime | None = None
    payload: dict[str, Any] | None = None

    @property
    def uvci(self) -> str | None:
        """The certificate identifier (`ci`) of its vaccination, test or recovery entry."""
        if self.payload is None:
            return None
        for kind in CERTIFICATE_TYPES:
            entries = self.payload.get(kind)
            if isinstance(entries, list) and entries and isinstance(entries[0], dict):
                ci = entries[0].get("ci")
                return ci if isinstance(ci, str) else None
        return None

    def revoked(self) -> Verification:
        """The same verdict, overridden by a revocation (signature checks still come first)."""
        if self.reason in (Reason.OK, Reason.EXPIRED):
            return replace(self, valid=False, reason=Reason.REVOKED, detail="the UVCI is revoked")
        return self


def uvci_sha256(uvci: str) -> bytes:
    """SHA-256 of the UVCI exactly as the certificate writes it (the revocation list's key)."""
    return hashlib.sha256(uvci.encode("utf-8")).digest()


def uci_hash(uvci: str) -> str:
    """The EU DCC revocation list's `UCI` hash: the first 128 bits of SHA-256, base64."""
    return base64.b64encode(uvci_sha256(uvci)[:16]).decode("ascii")


def _types(payload: dict[str, Any]) -> set[str]:
    return {kind for kind in CERTIFICATE_TYPES if payload.get(kind)}


def verify(
    hc1: str,
    trust: TrustList,
    now: datetime,
    is_revoked: Callable[[str], bool] | None = None,
    *,
    at: datetime | None = None,
) -> Verification:
    """Verify an `HC1:` string against `trust` on the verifier's clock `now`; `at` (asked by
    a caller, untrusted) can only move the expiry check later (all timezone-aware)."""
    try:
        message = decode_hc1(hc1)
        claims = decode_claims(message)
    except Malformed as exc:
        return Verification(valid=False, reason=Reason.MALFORMED, detail=str(exc))
    payload = jsonable(claims.hcert)
    seen = Verification(
        valid=False,
        reason=Reason.MALFORMED,
        kid=message.kid,
        issuer=claims.issuer,
        issued_at=claims.issued_at,
        expires_at=claims.expires_at,
        payload=payload,
    )
    if claims.expires_at is None:
        return replace(seen, detail="the CWT has no expiry (claim 4)")
    # Without an issuing date the DSC's validity cannot be checked: refuse rather than skip.
    if claims.issued_at is None:
        return replace(seen, detail="the CWT has no issuing date (claim 6)")
    key = trust.get(message.kid)
    if key is None:
        detail = "no kid in the COSE headers" if message.kid is None else "kid not trusted"
        return replace(seen, reason=Reason.UNKNOWN_KEY, detail=detail)
    if not signature_ok(message, key.public_key):
        return replace(seen, reason=Reason.BAD_SIGNATURE, detail="the signature does not verify")
    # A revoked DSC may be in other hands: nothing it signed holds, whatever its date
    # says (a thief writes any issuing date he likes).
    if key.revoked is not None:
        return replace(
            seen,
            reason=Reason.SIGNER_REVOKED,
            detail=f"the DSC was revoked ({key.revoked.reason})",
        )
    # A country's DSC speaks for that country only (the `iss` claim is optional in the
    # DCC: when absent, the certificate claims no issuer to contradict).
    if claims.issuer is not None and claims.issuer.upper() != (key.country or "").upper():
        return replace(
            seen,
            reason=Reason.ISSUER_MISMATCH,
            detail=f"issued as {claims.issuer} by a DSC of {key.country or 'no country'}",
        )
    # A DSC vouches only for what it signed while it was valid: a certificate dated
    # outside that window was signed by a key that should no longer (or not yet) be used.
    if not key.not_before <= claims.issued_at <= key.not_after:
        return replace(
            seen,
            reason=Reason.SIGNER_NOT_VALID,
            detail=(
                f"issued {claims.issued_at:%Y-%m-%d}, outside the DSC's validity "
                f"({key.not_before:%Y-%m-%d} to {key.not_after:%Y-%m-%d})"
            ),
        )
    if key.key_usage is not None and not _types(payload) <= key.key_usage:
        return replace(
            seen,
            reason=Reason.WRONG_KEY_USAGE,
            detail=f"the DSC may sign only {''.join(sorted(key.key_usage))} certificates",
        )
    ok = replace(seen, valid=True, reason=Reason.OK)
    uvci = ok.uvci
    if is_revoked is not None and uvci is not None and is_revoked(uvci):
        return ok.revoked()
    if max(now, at or now) >= claims.expires_at:
        return replace(seen, reason=Reason.EXPIRED, detail="past the CWT expiry")
    return ok
