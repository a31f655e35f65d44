"""The SigningKey aggregate: a DSC on the trust list is revoked once, never the one
signing now, never an unknown kid, and only for a known reason."""

from __future__ import annotations

import msgspec
import pytest

from immunreg.contracts.certificates import SigningKeyRevoked
from immunreg.domain import Conflict, DomainError, NotFound, RuleViolation
from services.certificates.domain import (
    RevokeSigningKey,
    SigningKeyState,
    decide_signer,
    evolve_signer,
    signing_key_stream_id,
)

KID = "AAECAwQFBgc="


BASE = RevokeSigningKey(kid=KID, reason="key_compromise", listed=True, active=False, country="RS")


def revoke(**changes: object) -> RevokeSigningKey:
    return msgspec.structs.replace(BASE, **changes)


def test_a_listed_dsc_is_revoked_once() -> None:
    events = decide_signer(SigningKeyState(), revoke())
    assert events == [
        SigningKeyRevoked(kid=KID, country="RS", source="issuer", reason="key_compromise")
    ]
    state = evolve_signer(SigningKeyState(), events[0])
    assert (state.kid, state.revoked, state.reason) == (KID, True, "key_compromise")
    assert decide_signer(state, revoke(reason="superseded")) == []


@pytest.mark.parametrize(
    ("command", "refusal", "code"),
    [
        (revoke(listed=False), NotFound, "unknown_signing_key"),
        (revoke(active=True), Conflict, "signing_key_active"),
        (revoke(reason="lost"), RuleViolation, "unknown_revocation_reason"),
    ],
)
def test_refusals(command: RevokeSigningKey, refusal: type[DomainError], code: str) -> None:
    with pytest.raises(refusal) as raised:
        decide_signer(SigningKeyState(), command)
    assert raised.value.code == code


def test_the_stream_is_named_by_the_kid_in_hex() -> None:
    assert signing_key_stream_id(bytes(range(8))) == "signing-key-0001020304050607"
