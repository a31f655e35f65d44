"""The portal's words in English and Serbian (Latin script); the Cyrillic is derived.

Serbian is written in both scripts with a one-to-one letter mapping, so the Cyrillic
strings are transliterated from the Latin ones (`immunreg.serbian.to_cyrillic`) when
`static/i18n.js` is written (`python -m immunreg.portal.strings`), and a unit test checks
the committed file is what this module writes.
"""

from __future__ import annotations

import json
from pathlib import Path

from immunreg.serbian import to_cyrillic

EN: dict[str, str] = {
    "title": "Vaccination portal",
    "subtitle": "Covid-19 immunization registry of Serbia",
    "language": "Language",
    "skip": "Skip to content",
    "loading": "Loading…",
    "required": "required",
    "register_h": "Register for vaccination",
    "register_intro": "New here? Register your interest, then sign in with a code sent to "
    "your phone or e-mail.",
    "national_id": "National ID number (JMBG)",
    "given_name": "Given name",
    "family_name": "Family name",
    "birth_date": "Date of birth",
    "sex": "Sex",
    "sex_female": "Female",
    "sex_male": "Male",
    "sex_other": "Other",
    "municipality": "Municipality of residence",
    "phone": "Mobile phone",
    "phone_hint": "For example +381641234567 or 0641234567",
    "email": "E-mail",
    "contact_hint": "Give a phone number, an e-mail address or both.",
    "priority_group": "Priority group",
    "vaccine": "Preferred vaccine",
    "any_vaccine": "Any vaccine",
    "preferred_municipality": "Where you would like to be vaccinated",
    "same_as_residence": "Where I live",
    "consent": "I agree that my data is processed for my vaccination",
    "reminders": "Send me reminders",
    "register_btn": "Register",
    "registered_ok": "You are registered. Sign in below with a code we send to your phone "
    "or e-mail.",
    "fix_fields": "Please correct the marked fields.",
    "signin_h": "Sign in",
    "contact": "Phone or e-mail given at registration",
    "send_code": "Send me a code",
    "code_sent": "If this contact is registered, a 6-digit code is on its way. It is valid "
    "for 5 minutes.",
    "code": "6-digit code",
    "sign_in_btn": "Sign in",
    "sign_out": "Sign out",
    "welcome": "Hello, {name}",
    "appointment_h": "Your appointment",
    "no_appointment": "No appointment yet. You will get a message when one is booked.",
    "site": "Site",
    "address": "Address",
    "map": "Show {site} on the map",
    "date": "Date",
    "time": "Time",
    "time_range": "between {from} and {to}",
    "vaccine_label": "Vaccine",
    "dose_n": "Dose {n}",
    "booster": "Booster",
    "reschedule_h": "Move the appointment",
    "new_day": "New date",
    "same_site": "The same site",
    "reschedule_btn": "Move the appointment",
    "rescheduled": "Your appointment was moved.",
    "cancel_btn": "Cancel the appointment",
    "cancel_confirm": "Cancel this appointment?",
    "cancelled": "Your appointment was cancelled. A new one will be offered.",
    "doses_h": "Your doses",
    "no_doses": "No doses recorded yet.",
    "given_at": "Given",
    "lot": "Lot",
    "status": "Status",
    "dose_completed": "Recorded",
    "dose_entered-in-error": "Entered in error",
    "certs_h": "Certificates",
    "no_certs": "No certificates yet.",
    "cert_of": "Dose {n} of {total}",
    "cert_valid": "Valid",
    "cert_revoked": "Revoked",
    "valid_until": "Valid until",
    "download_qr": "Download the QR code (PNG)",
    "download_print": "Download the printable page",
    "qr_alt": "QR code of certificate {uvci}",
    "contacts_h": "Contact details and preferences",
    "message_language": "Language of messages",
    "save": "Save",
    "saved": "Saved.",
    "withdraw_h": "Withdraw",
    "withdraw_intro": "You will no longer be offered appointments. You can register again "
    "at any time.",
    "withdraw_btn": "Withdraw my registration",
    "withdraw_confirm": "Withdraw your registration?",
    "withdrawn": "Your registration was withdrawn.",
    "error": "Something went wrong: {detail}",
    "session_ended": "Your session ended; please sign in again.",
    "appt_booked": "Booked",
    "appt_cancelled": "Cancelled",
    "appt_attended": "Attended",
    "appt_missed": "Missed",
    "pg_health_worker": "Health worker",
    "pg_care_home": "Care-home resident or staff",
    "pg_chronic_patient": "Chronic patient",
    "pg_critical_worker": "Critical worker (education, police, army, utilities)",
    "pg_general": "General population",
}

SR_LATN: dict[str, str] = {
    "title": "Portal za vakcinaciju",
    "subtitle": "Registar imunizacije protiv kovida 19 u Srbiji",
    "language": "Jezik",
    "skip": "Pređi na sadržaj",
    "loading": "Učitavanje…",
    "required": "obavezno",
    "register_h": "Prijava za vakcinaciju",
    "register_intro": "Prvi put ste ovde? Prijavite interesovanje, a zatim se prijavite "
    "kodom koji šaljemo na vaš telefon ili e-poštu.",
    "national_id": "Jedinstveni matični broj građana (JMBG)",
    "given_name": "Ime",
    "family_name": "Prezime",
    "birth_date": "Datum rođenja",
    "sex": "Pol",
    "sex_female": "Ženski",
    "sex_male": "Muški",
    "sex_other": "Drugo",
    "municipality": "Opština prebivališta",
    "phone": "Mobilni telefon",
    "phone_hint": "Na primer +381641234567 ili 0641234567",
    "email": "E-pošta",
    "contact_hint": "Navedite broj telefona, adresu e-pošte ili oboje.",
    "priority_group": "Prioritetna grupa",
    "vaccine": "Željena vakcina",
    "any_vaccine": "Bilo koja vakcina",
    "preferred_municipality": "Gde želite da se vakcinišete",
    "same_as_residence": "Gde živim",
    "consent": "Saglasan sam da se moji podaci obrađuju radi vakcinacije",
    "reminders": "Šaljite mi podsetnike",
    "register_btn": "Pošalji prijavu",
    "registered_ok": "Prijava je primljena. Prijavite se ispod kodom koji šaljemo na vaš "
    "telefon ili e-poštu.",
    "fix_fields": "Ispravite označena polja.",
    "signin_h": "Prijavljivanje",
    "contact": "Telefon ili e-pošta navedeni pri prijavi",
    "send_code": "Pošalji mi kod",
    "code_sent": "Ako je ovaj kontakt prijavljen, šestocifreni kod je poslat. Važi 5 minuta.",
    "code": "Šestocifreni kod",
    "sign_in_btn": "Prijavi se",
    "sign_out": "Odjavi se",
    "welcome": "Zdravo, {name}",
    "appointment_h": "Vaš termin",
    "no_appointment": "Još nemate termin. Dobićete poruku kada bude zakazan.",
    "site": "Punkt",
    "address": "Adresa",
    "map": "Prikaži {site} na mapi",
    "date": "Datum",
    "time": "Vreme",
    "time_range": "između {from} i {to}",
    "vaccine_label": "Vakcina",
    "dose_n": "Doza {n}",
    "booster": "Buster doza",
    "reschedule_h": "Promena termina",
    "new_day": "Novi datum",
    "same_site": "Isti punkt",
    "reschedule_btn": "Promeni termin",
    "rescheduled": "Vaš termin je promenjen.",
    "cancel_btn": "Otkaži termin",
    "cancel_confirm": "Otkazati ovaj termin?",
    "cancelled": "Vaš termin je otkazan. Biće vam ponuđen novi.",
    "doses_h": "Vaše doze",
    "no_doses": "Još nema evidentiranih doza.",
    "given_at": "Data",
    "lot": "Serija",
    "status": "Status",
    "dose_completed": "Evidentirana",
    "dose_entered-in-error": "Uneta greškom",
    "certs_h": "Sertifikati",
    "no_certs": "Još nema sertifikata.",
    "cert_of": "Doza {n} od {total}",
    "cert_valid": "Važeći",
    "cert_revoked": "Opozvan",
    "valid_until": "Važi do",
    "download_qr": "Preuzmi QR kod (PNG)",
    "download_print": "Preuzmi stranicu za štampu",
    "qr_alt": "QR kod sertifikata {uvci}",
    "contacts_h": "Kontakt podaci i želje",
    "message_language": "Jezik poruka",
    "save": "Sačuvaj",
    "saved": "Sačuvano.",
    "withdraw_h": "Povlačenje prijave",
    "withdraw_intro": "Više vam neće biti nuđeni termini. Možete se ponovo prijaviti u bilo "
    "kom trenutku.",
    "withdraw_btn": "Povuci moju prijavu",
    "withdraw_confirm": "Povući prijavu?",
    "withdrawn": "Vaša prijava je povučena.",
    "error": "Došlo je do greške: {detail}",
    "session_ended": "Sesija je istekla; prijavite se ponovo.",
    "appt_booked": "Zakazan",
    "appt_cancelled": "Otkazan",
    "appt_attended": "Obavljen",
    "appt_missed": "Propušten",
    "pg_health_worker": "Zdravstveni radnik",
    "pg_care_home": "Korisnik ili zaposleni u domu za stare",
    "pg_chronic_patient": "Hronični bolesnik",
    "pg_critical_worker": "Zaposleni u ključnim službama (prosveta, policija, vojska, "
    "komunalne službe)",
    "pg_general": "Opšta populacija",
}


def messages() -> dict[str, dict[str, str]]:
    """Every language's strings, by language tag."""
    return {
        "sr-Latn": SR_LATN,
        "sr-Cyrl": {key: to_cyrillic(value) for key, value in SR_LATN.items()},
        "en": EN,
    }


I18N_JS = Path(__file__).with_name("static") / "i18n.js"


def i18n_js() -> str:
    """The text of static/i18n.js."""
    body = json.dumps(messages(), ensure_ascii=False, indent=1, sort_keys=True)
    return (
        "// Written by `python -m immunreg.portal.strings` from strings.py: edit there.\n"
        f"export const MESSAGES = {body};\n"
    )


if __name__ == "__main__":
    I18N_JS.write_text(i18n_js(), "utf-8")
