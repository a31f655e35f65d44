"""Sign-in's edges: the contact index, the codes sent, the per-contact limit, the message
and the citizen token. The rules are in `signin.py`.

The contact index (`sign_in_contacts`) maps a keyed hash of each phone and e-mail to
its citizen and is written in the same transaction as the events that change contacts
(`index_contacts`, called by the books): a citizen signs in right after registering,
and a withdrawal or erasure removes the lookup and any code in flight with it. The
hash keys are derived from the citizen-id key, so no new secret needs configuring.

Settings (each `REGISTRATION_<NAME>`, or `Settings.extra[<NAME>]`):

- `SIGN_IN_KEY_FILE`: the ES256 private key (PEM) citizen tokens are signed with, and
  `SIGN_IN_KEY_ID`, its kid in the services' JWKS (default: derived as `immunreg token`
  does). Unset: the development signing key. Production refuses to start without it.
- `SIGN_IN_TOKEN_MINUTES` (30), `SIGN_IN_CONTACT_BURST` (3 codes per contact, one more
  every 5 minutes); the per-address limit is the service's public one (`RATE_LIMIT_*`).
- Where codes are sent from: `immunreg.outbound` (`SMTP_*`, `SMS_GATEWAY_*`).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import msgspec
from aiohttp import web

from immunreg.config import PRODUCTION, Settings, positive_number, setting
from immunreg.contracts.common import Sealed
from immunreg.contracts.envelope import Event
from immunreg.contracts.registration import (
    CitizenErased,
    CitizenRegistered,
    ContactDetailsChanged,
    HealthData,
    PersonalData,
    RegistrationWithdrawn,
    health_context,
)
from immunreg.eventstore.database import Connection
from immunreg.eventstore.postgres import Cte
from immunreg.http.app import SETTINGS_KEY
from immunreg.http.auth import DEV_AUDIENCE, DEV_ISSUER, Role, ensure_dev_keys, issue_token
from immunreg.http.problems import FieldError, Problem
from immunreg.http.ratelimit import RateLimiter, refuse_over_limit
from immunreg.outbound import (
    Channel,
    Outbound,
    OutboundConfig,
    Outgoing,
    PermanentFailure,
    TemporaryFailure,
)
from immunreg.paths import keys_dir
from immunreg.sealing import CitizenKey, seal, unseal
from immunreg.tasks import stop_tasks

from .keys import KeyRing, fetch_citizen_key
from .signin import (
    CODE_LIFETIME,
    TOKEN_LIFETIME,
    Challenge,
    Contact,
    Verdict,
    after_wrong_code,
    challenge_for,
    code_digest,
    code_text,
    contact_digest,
    contact_of,
    contacts_of,
    derive_key,
    is_code_shaped,
    judge,
    new_code,
)

SERVICE = "registration"
ROUTE_CODES = "sign_in_codes"
CONTACT_REFILL_PER_MINUTE = 0.2  # one more code per contact every 5 minutes
SEND_STOP_SECONDS = 5.0

log = logging.getLogger(__name__)

_personal_encoder = msgspec.json.Encoder()
_personal_decoder = msgspec.json.Decoder(PersonalData)
_health_decoder = msgspec.json.Decoder(HealthData)


def seal_personal(key: CitizenKey, citizen_id: str, personal: PersonalData) -> Sealed:
    """Personal data sealed with the citizen's key, bound to the citizen id."""
    return seal(key.key, _personal_encoder.encode(personal), citizen_id.encode(), key_id=key.key_id)


def unseal_personal(key: CitizenKey, citizen_id: str, sealed: Sealed) -> PersonalData:
    """What `seal_personal` sealed."""
    return _personal_decoder.decode(unseal(key.key, sealed, citizen_id.encode()))


def seal_health(key: CitizenKey, citizen_id: str, health: HealthData) -> Sealed:
    """Health data sealed with the citizen's key, bound to the citizen's health context."""
    return seal(
        key.key, _personal_encoder.encode(health), health_context(citizen_id), key_id=key.key_id
    )


def unseal_health(key: CitizenKey, citizen_id: str, sealed: Sealed) -> HealthData:
    """What `seal_health` sealed."""
    return _health_decoder.decode(unseal(key.key, sealed, health_context(citizen_id)))


# --- the contact index, kept by the command path ---------------------------------------


def contacts_indexed(
    ring: KeyRing, citizen_id: str, key: CitizenKey, event: CitizenRegistered, *, gate: str
) -> Cte:
    """A new citizen's lookup rows (`index_contacts`), as a CTE of a registration's one
    statement (`Along`) that writes only when the CTE `gate` yields a row. A new random id
    has no rows to delete first."""
    sql = _INDEX_CONTACTS.format(gate=f", {gate}")
    return ("contacts", sql, (_contact_hashes(ring, key, citizen_id, event), citizen_id))


# A contact two citizens share signs in the one who gave it last. `{gate}`: as in
# `contacts_indexed`.
_INDEX_CONTACTS = """
INSERT INTO sign_in_contacts (contact_hash, citizen_id)
SELECT h.contact_hash, $2::text FROM unnest($1::text[]) AS h(contact_hash) {gate}
ON CONFLICT (contact_hash) DO UPDATE SET citizen_id = excluded.citizen_id
"""


def _contact_hashes(
    ring: KeyRing,
    key: CitizenKey,
    citizen_id: str,
    event: CitizenRegistered | ContactDetailsChanged,
) -> list[str]:
    personal = unseal_personal(key, citizen_id, event.personal)
    lookup = derive_key(ring.id_key, "contact-lookup")
    return [contact_digest(lookup, c) for c in contacts_of(personal.phone, personal.email)]


async def index_contacts(conn: Connection, ring: KeyRing, citizen_id: str, event: Event) -> None:
    """Bring the citizen's lookup rows up to the event (in the command's transaction)."""
    if isinstance(event, CitizenRegistered | ContactDetailsChanged):
        key = await fetch_citizen_key(conn, ring, citizen_id)
        if key is None:
            raise RuntimeError(f"citizen {citizen_id} has contact details but no data key")
        hashes = _contact_hashes(ring, key, citizen_id, event)
        await conn.execute("DELETE FROM sign_in_contacts WHERE citizen_id = $1", citizen_id)
        if hashes:
            await conn.execute(_INDEX_CONTACTS.format(gate=""), hashes, citizen_id)
    elif isinstance(event, RegistrationWithdrawn | CitizenErased):
        await conn.execute("DELETE FROM sign_in_contacts WHERE citizen_id = $1", citizen_id)
        await conn.execute("DELETE FROM sign_in_codes WHERE citizen_id = $1", citizen_id)


# --- sign-in ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenSigner:
    """Mints citizen tokens through the one `issue_token`."""

    private_pem: bytes
    kid: str | None
    issuer: str
    audience: str
    lifetime: timedelta
    max_lifetime: timedelta

    def citizen_token(self, citizen_id: str) -> str:
        """A short-lived token for this citizen only."""
        return issue_token(
            self.private_pem,
            Role.CITIZEN,
            citizen_id=citizen_id,
            ttl=self.lifetime,
            max_lifetime=self.max_lifetime,
            issuer=self.issuer,
            audience=self.audience,
            kid=self.kid,
        )


@dataclass
class SignIn:
    """What sign-in holds for the life of the app; `clock` is replaceable in tests."""

    lookup_key: bytes
    code_key: bytes
    signer: TokenSigner
    outbound: Outbound
    per_contact: RateLimiter
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    sending: set[asyncio.Task[None]] = field(default_factory=set)

    def send_later(self, message: Outgoing) -> None:
        """Send in the background, so the answer takes as long whether the contact is
        known or not (its timing must not tell)."""
        task = asyncio.create_task(self._send(message))
        self.sending.add(task)
        task.add_done_callback(self.sending.discard)

    async def _send(self, message: Outgoing) -> None:
        try:
            await self.outbound.send(message)
        except (TemporaryFailure, PermanentFailure) as exc:
            # The citizen asks again; the reason names no contact.
            log.warning("a sign-in code was not sent by %s: %s", message.channel, exc)


SIGN_IN_KEY = web.AppKey("registration_sign_in", SignIn)


def _setting(settings: Settings, name: str) -> str | None:
    return settings.extra.get(name) or setting(name, SERVICE)


def token_signer(settings: Settings) -> TokenSigner:
    """The signing key and claims citizen tokens get, from the settings."""
    configured = _setting(settings, "SIGN_IN_KEY_FILE")
    if configured:
        private_pem = Path(configured).read_bytes()
    elif settings.environment == PRODUCTION:
        raise RuntimeError(
            "registration refuses to start in production mode: REGISTRATION_SIGN_IN_KEY_FILE "
            "is not set (citizen tokens would be signed with a development key)"
        )
    else:
        private_pem = ensure_dev_keys(keys_dir())[0].read_bytes()
    minutes = _setting(settings, "SIGN_IN_TOKEN_MINUTES")
    lifetime = (
        timedelta(minutes=positive_number("SIGN_IN_TOKEN_MINUTES", minutes, float))
        if minutes
        else TOKEN_LIFETIME
    )
    return TokenSigner(
        private_pem=private_pem,
        kid=_setting(settings, "SIGN_IN_KEY_ID"),
        issuer=settings.jwt_issuer or DEV_ISSUER,
        audience=settings.jwt_audience or DEV_AUDIENCE,
        lifetime=lifetime,
        max_lifetime=timedelta(seconds=settings.jwt_max_lifetime),
    )


def sign_in_resources(
    keys: web.AppKey[KeyRing],
) -> Callable[[web.Application], AsyncIterator[None]]:
    """The cleanup context that builds `SignIn` (after the key ring is loaded)."""

    async def resource(app: web.Application) -> AsyncIterator[None]:
        settings = app[SETTINGS_KEY]
        ring = app[keys]
        burst = _setting(settings, "SIGN_IN_CONTACT_BURST")
        sign_in = SignIn(
            lookup_key=derive_key(ring.id_key, "contact-lookup"),
            code_key=derive_key(ring.id_key, "sign-in-code"),
            signer=token_signer(settings),
            outbound=Outbound(OutboundConfig.from_settings(SERVICE, settings.extra)),
            per_contact=RateLimiter(
                CONTACT_REFILL_PER_MINUTE,
                int(positive_number("SIGN_IN_CONTACT_BURST", burst, int)) if burst else 3,
            ),
        )
        app[SIGN_IN_KEY] = sign_in
        try:
            yield
        finally:
            await stop_tasks(list(sign_in.sending), SEND_STOP_SECONDS)
            await sign_in.outbound.close()

    return resource


def _contact(raw: str) -> Contact:
    contact = contact_of(raw)
    if contact is None:
        raise Problem.unprocessable(
            errors=[FieldError("body.contact", "give the phone number or e-mail you registered")],
            code="invalid_fields",
        )
    return contact


async def request_code(sign_in: SignIn, pool: asyncpg.Pool, raw_contact: str) -> None:
    """Send a code to the contact if it belongs to an active citizen; the same answer and
    the same work either way (the per-contact limit applies to unknown contacts too)."""
    contact = _contact(raw_contact)
    contact_hash = contact_digest(sign_in.lookup_key, contact)
    refuse_over_limit(sign_in.per_contact, ROUTE_CODES, contact_hash, "this contact")
    code = new_code()
    digest = code_digest(sign_in.code_key, contact_hash, code)
    challenge = await pool.fetchval(
        """
        WITH known AS (
            SELECT s.citizen_id FROM sign_in_contacts s JOIN citizens c USING (citizen_id)
            WHERE s.contact_hash = $1 AND c.status = 'active'
        )
        INSERT INTO sign_in_codes AS s (contact_hash, citizen_id, code_hash, expires_at,
                                        attempts_left)
        SELECT $1, citizen_id, $2, $3, $4 FROM known
        ON CONFLICT (contact_hash) DO UPDATE SET citizen_id = excluded.citizen_id,
            code_hash = excluded.code_hash, expires_at = excluded.expires_at,
            attempts_left = excluded.attempts_left, created_at = now()
        RETURNING citizen_id
        """,
        contact_hash,
        *_challenge_row(challenge_for(digest, sign_in.clock())),
    )
    if challenge is None:
        return
    subject, text = code_text(code, int(CODE_LIFETIME.total_seconds() // 60))
    channel = Channel.EMAIL if contact.channel == "email" else Channel.SMS
    sign_in.send_later(
        Outgoing(
            message_id=f"sign-in-{uuid.uuid4().hex}",
            channel=channel,
            to=contact.address,
            subject=subject,
            body=text,
        )
    )


def _challenge_row(challenge: Challenge) -> tuple[str, datetime, int]:
    return challenge.code_digest, challenge.expires_at, challenge.attempts_left


INVALID_CODE = "the code is wrong, expired or used up; ask for a new one"


async def exchange_code(
    sign_in: SignIn, pool: asyncpg.Pool, raw_contact: str, code: str
) -> tuple[str, str]:
    """(citizen id, token) for a correct code; Problem 422 `invalid_code` otherwise.

    A wrong code costs one of its tries and that is committed before the refusal;
    the fifth wrong try, expiry and use each forget the code.
    """
    contact = _contact(raw_contact)
    if not is_code_shaped(code):
        raise Problem.unprocessable(
            errors=[FieldError("body.code", "the code is the 6 digits you received")],
            code="invalid_fields",
        )
    contact_hash = contact_digest(sign_in.lookup_key, contact)
    presented = code_digest(sign_in.code_key, contact_hash, code)
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            """
            SELECT s.citizen_id, s.code_hash, s.expires_at, s.attempts_left,
                   c.status = 'active' AS active
            FROM sign_in_codes s LEFT JOIN citizens c USING (citizen_id)
            WHERE s.contact_hash = $1 FOR UPDATE OF s
            """,
            contact_hash,
        )
        challenge = (
            Challenge(
                code_digest=row["code_hash"],
                expires_at=row["expires_at"],
                attempts_left=row["attempts_left"],
            )
            if row is not None
            else None
        )
        verdict = judge(challenge, presented, sign_in.clock())
        after = after_wrong_code(challenge) if challenge and verdict is Verdict.WRONG else None
        if after is not None:
            await conn.execute(
                "UPDATE sign_in_codes SET attempts_left = $2 WHERE contact_hash = $1",
                contact_hash,
                after.attempts_left,
            )
        elif challenge is not None:
            await conn.execute("DELETE FROM sign_in_codes WHERE contact_hash = $1", contact_hash)
    if verdict is not Verdict.ACCEPTED or challenge is None or row is None or not row["active"]:
        raise Problem.unprocessable(
            INVALID_CODE,
            errors=[FieldError("body.code", INVALID_CODE)],
            code="invalid_code",
        )
    citizen_id: str = row["citizen_id"]
    return citizen_id, sign_in.signer.citizen_token(citizen_id)
