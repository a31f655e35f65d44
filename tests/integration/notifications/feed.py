"""Feeding the notifications service as the other services' relays would: events on the
real (shared) topics. Used by the in-process tests and the process test alike."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import msgspec
from aiokafka import AIOKafkaProducer

from immunreg.contracts import administration, booking, certificates, inventory, registration
from immunreg.contracts.administration import DoseAdministered
from immunreg.contracts.booking import (
    AppointmentBooked,
    AppointmentCancelled,
    AppointmentMissed,
    AppointmentRescheduled,
    SiteDefined,
)
from immunreg.contracts.certificates import CertificateIssued
from immunreg.contracts.envelope import Context, Envelope, Event, encode_envelope
from immunreg.contracts.inventory import LotRecalled
from immunreg.contracts.registration import (
    CitizenErased,
    CitizenRegistered,
    Consent,
    PersonalData,
    PersonalDataKeyGranted,
    grant_context,
)
from immunreg.sealing import WRAP_ALG, new_data_key, seal, wrap_key

PRODUCT = "EU/1/20/1528"  # Comirnaty
_json = msgspec.json.Encoder()
AppointmentEvent = (
    AppointmentBooked | AppointmentRescheduled | AppointmentCancelled | AppointmentMissed
)


@dataclass
class Person:
    """A citizen as registration knows them, with the data key it would grant."""

    citizen_id: str
    email: str | None
    phone: str | None
    language: str = "sr-Latn"
    key: bytes = field(default_factory=new_data_key)
    key_id: str = field(default_factory=lambda: uuid.uuid4().hex)


@dataclass
class Feed:
    """Publishes events for the tests, numbering each stream's versions."""

    bootstrap: str
    pool: asyncpg.Pool  # the notifications schema: where it keeps the key it offers
    versions: dict[str, int] = field(default_factory=dict)

    def envelope(
        self, context: Context, event: Event, stream_id: str, stream_type: str
    ) -> Envelope:
        version = self.versions.get(stream_id, 0) + 1
        self.versions[stream_id] = version
        return context.envelope(
            event, stream_id=stream_id, stream_type=stream_type, version=version
        )

    def appointment(self, event: AppointmentEvent) -> Envelope:
        """An event of an appointment's stream, as booking records it."""
        stream = f"appointment-{event.appointment_id}"
        return self.envelope(booking.CONTEXT, event, stream, "Appointment")

    async def publish(self, context: Context, *envelopes: Envelope) -> list[tuple[int, int]]:
        """Each envelope as the relay would send it (a test may send one twice); where
        each landed, as (partition, offset)."""
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap)
        await producer.start()
        landed: list[tuple[int, int]] = []
        try:
            for envelope in envelopes:
                sent = await producer.send_and_wait(
                    context.topic, encode_envelope(envelope), key=envelope.stream_id.encode()
                )
                landed.append((sent.partition, sent.offset))
        finally:
            await producer.stop()
        return landed

    def person(self, *, language: str = "sr-Latn", sms: bool = False) -> Person:
        citizen_id = "c-" + base64.b32encode(secrets.token_bytes(15)).decode().lower()[:20]
        tag = uuid.uuid4().hex[:10]
        if sms:
            return Person(citizen_id, None, f"+38165{secrets.randbelow(10**7):07d}", language)
        return Person(citizen_id, f"p.{tag}@example.rs", None, language)

    async def register(self, person: Person, *, grant: bool = True) -> None:
        personal = PersonalData(
            national_id="0101990710008",
            given_name="Milica",
            family_name="Jovanović",
            phone=person.phone,
            email=person.email,
        )
        sealed = seal(
            person.key, _json.encode(personal), person.citizen_id.encode(), key_id=person.key_id
        )
        registered = CitizenRegistered(
            citizen_id=person.citizen_id,
            birth_date=date(1990, 1, 1),
            sex="female",
            municipality_code="70092",
            priority_group="general",
            consent=Consent(data_processing=True),
            personal=sealed,
            language=person.language,
        )
        ctx = registration.CONTEXT
        await self.publish(ctx, self.envelope(ctx, registered, person.citizen_id, "Citizen"))
        if grant:
            await self.grant(person)

    async def grant(self, person: Person) -> None:
        """As registration answers notifications' offer: the data key wrapped to it."""
        offered: bytes | None = None
        deadline = asyncio.get_running_loop().time() + 60
        while offered is None:
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError("notifications offered no key for the person")
            with contextlib.suppress(asyncpg.UndefinedTableError):
                offered = await self.pool.fetchval(
                    "SELECT public_key FROM holder_keys WHERE citizen_id = $1 AND data_key_id = $2",
                    person.citizen_id,
                    person.key_id,
                )
            if offered is None:
                await asyncio.sleep(0.1)
        granted = PersonalDataKeyGranted(
            citizen_id=person.citizen_id,
            recipient="notifications",
            wrapped_key=wrap_key(
                offered, person.key, grant_context(person.citizen_id, "notifications")
            ),
            wrap_alg=WRAP_ALG,
            holder_key=base64.b64encode(offered).decode(),
            data_key_id=person.key_id,
        )
        ctx = registration.CONTEXT
        stream = f"key-grants-{person.citizen_id}"
        await self.publish(ctx, self.envelope(ctx, granted, stream, "CitizenKeyGrants"))

    async def erase(self, person: Person) -> None:
        ctx = registration.CONTEXT
        event = CitizenErased(citizen_id=person.citizen_id)
        await self.publish(ctx, self.envelope(ctx, event, person.citizen_id, "Citizen"))

    async def site(self, name: str = "Dom zdravlja Vračar", address: str = "Njegoševa 9") -> str:
        site_id = f"SITE-{uuid.uuid4().hex[:8]}"
        event = SiteDefined(
            site_id=site_id,
            name=name,
            municipality_code="70092",
            address=address,
            opening_hours="08:00-20:00",
        )
        ctx = booking.CONTEXT
        await self.publish(ctx, self.envelope(ctx, event, f"site-{site_id}", "Site"))
        return site_id

    def booked(
        self,
        person: Person,
        site_id: str,
        day: date,
        *,
        dose_number: int = 1,
        booster: bool = False,
        run_id: str | None = None,
    ) -> tuple[str, Envelope]:
        appointment_id = uuid.uuid4().hex
        event = AppointmentBooked(
            appointment_id=appointment_id,
            citizen_id=person.citizen_id,
            site_id=site_id,
            municipality_code="70092",
            day=day,
            product_code=PRODUCT,
            dose_number=dose_number,
            reason="test",
            booster=booster,
            run_id=run_id,
        )
        return appointment_id, self.appointment(event)

    async def book(self, person: Person, site_id: str, day: date, **kwargs: Any) -> str:
        appointment_id, envelope = self.booked(person, site_id, day, **kwargs)
        await self.publish(booking.CONTEXT, envelope)
        return appointment_id

    async def move(
        self,
        person: Person,
        appointment_id: str,
        *,
        from_site: str,
        from_day: date,
        site_id: str,
        day: date,
    ) -> None:
        event = AppointmentRescheduled(
            appointment_id=appointment_id,
            citizen_id=person.citizen_id,
            from_site_id=from_site,
            from_day=from_day,
            site_id=site_id,
            day=day,
            product_code=PRODUCT,
        )
        await self.publish(booking.CONTEXT, self.appointment(event))

    async def cancel(self, person: Person, appointment_id: str, site_id: str, day: date) -> None:
        event = AppointmentCancelled(
            appointment_id=appointment_id,
            citizen_id=person.citizen_id,
            site_id=site_id,
            day=day,
            product_code=PRODUCT,
            reason="site closed",
        )
        await self.publish(booking.CONTEXT, self.appointment(event))

    def missed(
        self, person: Person, appointment_id: str, site_id: str, day: date
    ) -> tuple[AppointmentMissed, Envelope]:
        """As booking's no-show sweep marks an appointment whose day is over."""
        event = AppointmentMissed(
            appointment_id=appointment_id,
            citizen_id=person.citizen_id,
            site_id=site_id,
            day=day,
            product_code=PRODUCT,
        )
        return event, self.appointment(event)

    async def certificate(self, person: Person) -> None:
        issued = datetime(2026, 3, 1, 23, 30, tzinfo=UTC)  # 2 March in Belgrade
        event = CertificateIssued(
            uvci=f"URN:UVCI:01:RS:{uuid.uuid4().hex[:12].upper()}",
            citizen_id=person.citizen_id,
            dose_id=uuid.uuid4().hex,
            dose_number=1,
            total_doses=2,
            product_code=PRODUCT,
            issued_at=issued,
            expires_at=issued + timedelta(days=365),
            key_id="a2V5",
        )
        ctx = certificates.CONTEXT
        await self.publish(
            ctx, self.envelope(ctx, event, f"certificate-{event.uvci}", "Certificate")
        )

    async def dose(self, person: Person, lot_number: str) -> None:
        dose_id = uuid.uuid4().hex
        event = DoseAdministered(
            dose_id=dose_id,
            citizen_id=person.citizen_id,
            site_id="SITE-0001",
            site_municipality_code="70092",
            citizen_municipality_code="70092",
            product_code=PRODUCT,
            lot_number=lot_number,
            # A one-dose series: a complete one asks booking (running elsewhere in the
            # session on the same topics) for no second appointment.
            dose_number=1,
            series_length=1,
            series_complete=True,
            administered_at=datetime.now(UTC),
            age_at_vaccination=36,
            sex="female",
            vaccinator_id="V-1",
        )
        ctx = administration.CONTEXT
        await self.publish(ctx, self.envelope(ctx, event, f"dose-{dose_id}", "DoseRecord"))

    async def recall(self, lot_number: str) -> None:
        event = LotRecalled(lot_number=lot_number, product_code=PRODUCT, reason="quality")
        ctx = inventory.CONTEXT
        await self.publish(ctx, self.envelope(ctx, event, f"lot-{lot_number}", "Lot"))
