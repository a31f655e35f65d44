"""Sign-in's rules (pure): contacts as typed, keyed hashes, expiry on an injected clock, tries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.registration.signin import (
    CODE_LIFETIME,
    MAX_ATTEMPTS,
    Contact,
    Verdict,
    after_wrong_code,
    challenge_for,
    code_digest,
    contact_digest,
    contact_of,
    contacts_of,
    derive_key,
    is_code_shaped,
    judge,
    new_code,
)

ROOT = bytes(range(32))
NOW = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("064 123 4567", Contact("sms", "+381641234567")),
        ("+381641234567", Contact("sms", "+381641234567")),
        ("00381641234567", Contact("sms", "+381641234567")),
        ("Ana.P@Example.RS", Contact("email", "ana.p@example.rs")),
        (" ana@example.rs ", Contact("email", "ana@example.rs")),
        ("not a contact", None),
        ("ana@", None),
        ("", None),
    ],
)
def test_a_contact_is_read_as_registration_stores_it(typed: str, expected: Contact | None) -> None:
    assert contact_of(typed) == expected


def test_the_registered_contacts_are_looked_up_as_typed_ones_are() -> None:
    key = derive_key(ROOT, "contact-lookup")
    registered = contacts_of("+381641234567", "Ana.P@example.rs")
    typed = [contact_of("064/123-4567"), contact_of("ANA.P@EXAMPLE.RS")]
    assert [contact_digest(key, c) for c in registered] == [
        contact_digest(key, c) for c in typed if c
    ]


def test_hashes_are_keyed_and_purposes_do_not_share_a_key() -> None:
    contact = Contact("email", "ana@example.rs")
    lookup = derive_key(ROOT, "contact-lookup")
    assert lookup != derive_key(ROOT, "sign-in-code")
    assert contact_digest(lookup, contact) != contact_digest(
        derive_key(b"x" * 32, "contact-lookup"), contact
    )
    assert "ana" not in contact_digest(lookup, contact)
    # A code is bound to the contact it went to.
    assert code_digest(lookup, "a", "123456") != code_digest(lookup, "b", "123456")


def test_codes_are_six_digits() -> None:
    codes = {new_code() for _ in range(200)}
    assert all(is_code_shaped(c) for c in codes)
    assert len(codes) > 150  # random, not a counter or a constant
    for bad in ("12345", "1234567", "12a456", "\uff11\uff12\uff13\uff14\uff15\uff16", ""):
        assert not is_code_shaped(bad)


def test_a_code_works_until_just_before_it_expires() -> None:
    digest = code_digest(ROOT, "h", "123456")
    challenge = challenge_for(digest, NOW)
    assert challenge.expires_at == NOW + CODE_LIFETIME == NOW + timedelta(minutes=5)
    assert judge(challenge, digest, NOW + timedelta(minutes=4, seconds=59)) is Verdict.ACCEPTED
    assert judge(challenge, digest, NOW + timedelta(minutes=5)) is Verdict.EXPIRED
    assert judge(None, digest, NOW) is Verdict.NONE


def test_five_wrong_tries_use_a_code_up() -> None:
    right = code_digest(ROOT, "h", "123456")
    wrong = code_digest(ROOT, "h", "654321")
    challenge = challenge_for(right, NOW)
    assert challenge.attempts_left == MAX_ATTEMPTS == 5
    for tries_left in (4, 3, 2, 1):
        assert judge(challenge, wrong, NOW) is Verdict.WRONG
        after = after_wrong_code(challenge)
        assert after is not None and after.attempts_left == tries_left
        challenge = after
    assert judge(challenge, wrong, NOW) is Verdict.WRONG
    assert after_wrong_code(challenge) is None  # forgotten after the fifth
    assert judge(challenge, right, NOW) is Verdict.ACCEPTED  # the fourth wrong try still leaves it
