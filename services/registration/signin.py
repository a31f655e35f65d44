# Serbian Cyrillic texts: their letters look like Latin ones on purpose
"""Citizens' sign-in by one-time code: the rules, pure (no storage, no HTTP, no clock of its own).

A citizen names the phone or e-mail they registered with; a 6-digit code goes there and
is good for `CODE_LIFETIME` and `MAX_ATTEMPTS` tries. Only a keyed hash of the code is
kept (`code_digest`), and contacts are found by a keyed hash too (`contact_digest`), so
the tables name no contact and a stolen table does not give the codes away (a million
codes are quickly tried against an unkeyed hash).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal

import msgspec

from .rules import normalize_email, normalize_phone

CODE_DIGITS = 6
CODE_LIFETIME = timedelta(minutes=5)
MAX_ATTEMPTS = 5
TOKEN_LIFETIME = timedelta(minutes=30)

ContactChannel = Literal["email", "sms"]


class Contact(msgspec.Struct, frozen=True):
    """A phone number (E.164) or an e-mail address, normalised as registration stores it."""

    channel: ContactChannel
    address: str


class Challenge(msgspec.Struct, frozen=True, kw_only=True):
    """A code sent and not yet used: its keyed hash, until when, tries left."""

    code_digest: str
    expires_at: datetime
    attempts_left: int


class Verdict(StrEnum):
    """What a code presented against a challenge comes to."""

    ACCEPTED = "accepted"
    WRONG = "wrong"  # one try fewer
    EXPIRED = "expired"
    EXHAUSTED = "exhausted"
    NONE = "none"  # no code was sent to this contact (or it was used)


def contact_of(raw: str) -> Contact | None:
    """The contact a citizen typed: an e-mail when it has an @, else a phone; None if neither."""
    if "@" in raw:
        email = normalize_email(raw)
        # Lookups ignore case: people type their address as they remember it.
        return Contact("email", email.lower()) if email else None
    phone = normalize_phone(raw)
    return Contact("sms", phone) if phone else None


def derive_key(root: bytes, purpose: str) -> bytes:
    """A key for one purpose from a root key (HMAC as a PRF), so purposes never share a key."""
    return hmac.new(root, f"immunreg.registration.{purpose}".encode(), hashlib.sha256).digest()


def contact_digest(key: bytes, contact: Contact) -> str:
    """The keyed hash a contact is looked up by (HMAC-SHA256, hex)."""
    message = f"{contact.channel}|{contact.address}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def code_digest(key: bytes, contact_hash: str, code: str) -> str:
    """The keyed hash kept instead of the code, bound to the contact it was sent to."""
    return hmac.new(key, f"{contact_hash}|{code}".encode(), hashlib.sha256).hexdigest()


def new_code() -> str:
    """A uniformly random 6-digit code (leading zeros kept)."""
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


def is_code_shaped(code: str) -> bool:
    """Six ASCII digits."""
    return len(code) == CODE_DIGITS and code.isascii() and code.isdigit()


def challenge_for(digest: str, now: datetime) -> Challenge:
    """The challenge a fresh code opens (it replaces any earlier one for the contact)."""
    return Challenge(
        code_digest=digest,
        expires_at=now + CODE_LIFETIME,
        attempts_left=MAX_ATTEMPTS,
    )


def judge(challenge: Challenge | None, presented_digest: str, now: datetime) -> Verdict:
    """Whether the presented code (as its digest) opens the challenge at `now`."""
    if challenge is None:
        return Verdict.NONE
    if now >= challenge.expires_at:
        return Verdict.EXPIRED
    if challenge.attempts_left <= 0:
        return Verdict.EXHAUSTED
    if hmac.compare_digest(challenge.code_digest, presented_digest):
        return Verdict.ACCEPTED
    return Verdict.WRONG


def after_wrong_code(challenge: Challenge) -> Challenge | None:
    """The challenge after a wrong try; None once no tries are left (it is forgotten)."""
    left = challenge.attempts_left - 1
    return msgspec.structs.replace(challenge, attempts_left=left) if left > 0 else None


def code_text(code: str, minutes: int) -> tuple[str, str]:
    """(subject, text) of the message carrying a code: in all three languages, since the
    language preference is known only after sign-in and the text must reveal nothing else."""
    subject = "eVakcinacija: kod za prijavu / код за пријаву / sign-in code"
    text = (
        f"{code}\n"
        f"Vaš kod za prijavu važi {minutes} minuta.\n"
        f"Ваш код за пријаву важи {minutes} минута.\n"
        f"Your sign-in code is valid for {minutes} minutes.\n"
    )
    return subject, text


def contacts_of(phone: str | None, email: str | None) -> list[Contact]:
    """The contacts a registration can sign in with, as `contact_of` would read them."""
    contacts = [Contact("sms", phone)] if phone else []
    return contacts + ([Contact("email", email.lower())] if email else [])
