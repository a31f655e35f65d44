"""The citizens' portal in a real browser, against every service running as its own process.

A new person registers in the portal (first with mistakes the API names field by field),
reads the sign-in code from the local mailbox, signs in; an admin's scheduling run books
them and the portal shows the appointment; they move it in the portal; site staff record
the dose; the portal downloads the certificate's QR PNG, which decodes (zxing-cpp) to the
very `HC1:` string the certificates API returns. Every page visited is checked with
axe-core (no `serious` or `critical` violation) and photographed; the screenshots' folder
is printed. Debian's Chromium through Playwright, as the dashboard's test
(tests/integration/projections/browser.py); axe-core comes from `make axe` (npm, pinned).
"""

from __future__ import annotations

import io
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import zxingcpp
from e2e_http import poll, receive_lot, scheduling_run, send
from PIL import Image
from playwright.sync_api import Page, expect, sync_playwright
from test_certificates import dose_and_certificate
from test_notifications import mail_to

from immunreg.demo import wait_until_quiet
from immunreg.paths import REPO_ROOT
from immunreg.portal.strings import messages
from services.registration import jmbg
from tests.integration.projections.browser import FLAGS, ensure_chromium

if TYPE_CHECKING:  # tests/e2e is not a package; the fixture is found by pytest
    from conftest import Stack

PFIZER = "EU/1/20/1528"
# Čajetina: no other e2e test defines a site there, so the new person's preferred
# municipality has this test's site only and the scheduling run books them there.
MUNICIPALITY = "71234"
WAIT_MS = 90_000
SCREENSHOTS = REPO_ROOT / ".cache" / "portal-screenshots"


def axe_script() -> Path:
    """axe-core as `make axe` fetched it (the version pinned in the Makefile)."""
    pinned = re.search(r"^AXE_VERSION := (\S+)$", (REPO_ROOT / "Makefile").read_text(), re.M)
    assert pinned, "the Makefile pins AXE_VERSION"
    script = (
        REPO_ROOT / ".cache/tools" / f"axe-core-{pinned[1]}" / "node_modules/axe-core/axe.min.js"
    )
    if not script.exists():
        pytest.fail(f"axe-core {pinned[1]} is missing: run `make axe` (npm) first")
    return script


class Walk:
    """The browser's page, and for every step: axe-core's verdict and a screenshot."""

    def __init__(self, page: Page, axe: Path, folder: Path) -> None:
        self.page = page
        self.axe = axe
        self.folder = folder
        self.steps = 0

    def check(self, step: str, page: Page | None = None) -> None:
        """Screenshot the page as it is, and fail on any serious or critical violation."""
        page = page or self.page
        self.steps += 1
        page.screenshot(path=str(self.folder / f"{self.steps:02d}-{step}.png"), full_page=True)
        bad = self.serious(page)
        assert not bad, f"{step}: accessibility violations {bad}"

    def serious(self, page: Page) -> list[dict[str, Any]]:
        """axe-core's serious and critical violations on `page` (injected once per page)."""
        if not page.evaluate("typeof window.axe !== 'undefined'"):
            page.add_script_tag(path=str(self.axe))
        violations: list[dict[str, Any]] = page.evaluate(
            """async () => (await axe.run(document, { resultTypes: ["violations"] })).violations
                .map((v) => ({ id: v.id, impact: v.impact, help: v.help,
                               nodes: v.nodes.slice(0, 5).map((n) => n.target.join(" ")) }))"""
        )
        return [v for v in violations if v["impact"] in ("serious", "critical")]


def define_site_with_stock(stack: Stack) -> tuple[str, str]:
    """A site with capacity for Comirnaty every day, and a lot of it there: (site, lot)."""
    site = f"SITE-P{uuid.uuid4().hex[:8].upper()}"
    answer = send(
        "PUT",
        f"{stack.urls['booking']}/v1/sites/{site}",
        stack.token("admin"),
        {
            "name": "Dom zdravlja Čajetina (portal e2e)",
            "municipality_code": MUNICIPALITY,
            "address": "Kralja Petra I 21, Čajetina",
            "latitude": 43.7497,
            "longitude": 19.7156,
            "daily_capacity": {PFIZER: 2000},
        },
    )
    assert answer.status == 201, answer.json()
    logistics = stack.token("logistics")
    lot = receive_lot(stack.urls["inventory"], logistics, site, PFIZER, vials=2000, prefix="E2EP")
    return site, lot


def booked(stack: Stack, citizen_id: str, token: dict[str, str]) -> dict[str, Any]:
    """An admin's scheduling run books the citizen (runs again until booking has heard of
    them: registration and stock reach it over Kafka)."""
    quiet = wait_until_quiet(
        {name: stack.urls[name] for name in ("registration", "inventory", "booking")}, 120
    )
    assert quiet, "booking did not catch up with registration and inventory"
    tomorrow = date.today() + timedelta(days=1)
    booking = stack.urls["booking"]

    def run() -> tuple[bool, Any]:
        scheduling_run(
            booking, stack.token("admin"), {"from_day": tomorrow.isoformat(), "horizon_days": 3}
        )
        mine = send("GET", f"{booking}/v1/citizens/{citizen_id}/appointments", token).json()
        return bool(mine["items"]), mine["items"]

    [appointment] = poll("the scheduling run books the new person", run, timeout=120)
    return dict(appointment)


@pytest.mark.timeout(900)
def test_a_new_person_registers_signs_in_moves_their_appointment_and_gets_the_qr(
    stack: Stack, portal: str
) -> None:
    missing = {"registration", "booking", "inventory", "administration", "certificates"}
    missing -= stack.urls.keys()
    if missing:
        pytest.skip(f"the walk needs {', '.join(sorted(missing))} in the stack")
    chromium = ensure_chromium()
    axe = axe_script()
    folder = SCREENSHOTS / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\nportal screenshots: {folder}")
    site, lot = define_site_with_stock(stack)
    email = f"ana.{uuid.uuid4().hex[:8]}@example.rs"
    born = date(1975, 4, 17)
    national_id = jmbg.make(born, 71, 600 + uuid.uuid4().int % 300)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium, headless=True, args=list(FLAGS)
        )
        # The pages' Content-Security-Policy admits scripts from the portal only; axe-core
        # is the test's, injected past it.
        context = browser.new_context(
            viewport={"width": 1200, "height": 900},
            bypass_csp=True,
            accept_downloads=True,
            locale="en-GB",
        )
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        walk = Walk(page, axe, folder)
        # The check can fail: an unlabelled field and an image without text are found.
        bad_page = context.new_page()
        bad_page.set_content('<html lang="en"><main><img src="data:,"><input></main></html>')
        assert {"image-alt", "label"} <= {v["id"] for v in walk.serious(bad_page)}
        bad_page.close()
        try:
            walk_through(stack, walk, (site, lot), Person(email, born, national_id))
        finally:
            context.close()
            browser.close()
    assert not errors, errors


@dataclass(frozen=True)
class Person:
    email: str
    born: date
    national_id: str


def walk_through(stack: Stack, walk: Walk, place: tuple[str, str], person: Person) -> None:
    page, folder, site = walk.page, walk.folder, place[0]
    email, born, national_id = person.email, person.born, person.national_id
    en = messages()["en"]
    page.goto(stack_portal(stack))
    page.wait_for_selector("body[data-ready]")
    page.select_option("#lang", "en")  # the browser's own choice could be either
    expect(page.locator("#register-h")).to_have_text(en["register_h"])
    walk.check("start")

    # Mistakes first: the API's problem+json reasons appear under their fields.
    page.fill("#r-national_id", national_id)
    page.fill("#r-given_name", "Ana")
    page.fill("#r-family_name", "Petrović")
    page.fill("#r-birth_date", born.isoformat())
    page.select_option("#r-sex", "female")
    page.select_option("#r-municipality_code", MUNICIPALITY)
    page.fill("#r-phone", "12")
    page.fill("#r-email", email)
    page.select_option("#r-priority_group", "health_worker")
    page.select_option("#r-vaccine_preferences", PFIZER)
    page.select_option("#r-preferred_municipality_code", MUNICIPALITY)
    page.click("#register-submit")
    phone_error = page.locator('[data-field="phone"] .field-error')
    expect(phone_error).to_be_visible()
    consent_error = page.locator('[data-field="consent.data_processing"] .field-error')
    expect(consent_error).to_be_visible()
    expect(page.locator("#r-phone")).to_have_attribute("aria-invalid", "true")
    walk.check("field-errors")

    page.fill("#r-phone", "")
    page.check("#r-consent")
    page.click("#register-submit")
    expect(page.locator("#status")).to_have_text(en["registered_ok"])
    expect(page.locator("#s-contact")).to_have_value(email)
    walk.check("registered")

    # The code, as the person receives it: from the local SMTP server's mailbox.
    page.click("#send-code")
    expect(page.locator("#token-form")).to_be_visible()
    [message] = mail_to(stack, email)
    code = re.search(r"\b(\d{6})\b", message["body"])
    assert code is not None, message
    page.fill("#s-code", code[1])
    walk.check("code")
    page.click("#sign-in")
    page.wait_for_selector("body[data-view=home][data-loaded]")
    expect(page.locator("#welcome")).to_have_text(en["welcome"].format(name="Ana Petrović"))
    expect(page.locator("#appointment")).to_have_text(en["no_appointment"])
    # The language the page had at registration is the one messages are written in.
    expect(page.locator("#c-language")).to_have_value("en")
    walk.check("signed-in")

    citizen_id = page.evaluate("JSON.parse(sessionStorage.getItem('immunreg.portal.session'))")[
        "citizen_id"
    ]
    token = stack.token("citizen", citizen_id=citizen_id)
    appointment = booked(stack, citizen_id, token)
    assert (appointment["site_id"], appointment["status"]) == (site, "booked"), appointment

    page.reload()
    page.wait_for_selector("body[data-view=home][data-loaded]")
    day = page.locator("#appointment-day")
    expect(day).to_have_attribute("data-day", appointment["day"])
    expect(page.locator("#appointment")).to_contain_text("Dom zdravlja Čajetina (portal e2e)")
    expect(page.locator("#appointment")).to_contain_text("Kralja Petra I 21, Čajetina")
    expect(page.locator("#map-link")).to_have_attribute("href", re.compile(r"mlat=43\.7497"))
    expect(page.locator("#appointment")).to_contain_text("Comirnaty")
    walk.check("appointment")

    # The person moves it a day later, in the portal.
    later = (date.fromisoformat(appointment["day"]) + timedelta(days=1)).isoformat()
    page.fill("#m-day", later)
    page.click("#reschedule")
    expect(page.locator("#status")).to_have_text(en["rescheduled"])
    expect(day).to_have_attribute("data-day", later)
    booking = stack.urls["booking"]
    mine = send("GET", f"{booking}/v1/citizens/{citizen_id}/appointments", token).json()
    [moved] = [a for a in mine["items"] if a["status"] == "booked"]
    assert (moved["appointment_id"], moved["day"]) == (appointment["appointment_id"], later)
    walk.check("rescheduled")

    # Site staff record the dose (administration's API); the certificate follows.
    given_at = datetime.now(UTC) - timedelta(minutes=5)
    _, certificate = dose_and_certificate(stack, citizen_id, place, given_at)
    # The nurse looks the person up (booked at their site: allowed, and audited).
    nurse = stack.token("site_staff", site_id=site, subject="nurse-portal-e2e")
    looked = send("GET", f"{booking}/v1/citizens/{citizen_id}/appointments", nurse)
    assert looked.status == 200, looked.json()
    page.reload()
    page.wait_for_selector("body[data-view=home][data-loaded]")
    expect(page.locator("#doses-table tbody tr")).to_have_count(1)
    qr_button = page.locator(f'button.download-qr[data-uvci="{certificate["uvci"]}"]')
    expect(qr_button).to_be_visible()
    # Who read the record: the nurse, in booking's audit log; the person's own reads not.
    expect(page.locator("#reads-table")).to_contain_text("nurse-portal-e2e")
    expect(page.locator("#reads-table")).to_contain_text(en["svc_booking"])
    walk.check("certificate")

    with page.expect_download() as downloading:
        qr_button.click()
    png = folder / "certificate-qr.png"
    downloading.value.save_as(png)
    [decoded] = zxingcpp.read_barcodes(Image.open(io.BytesIO(png.read_bytes())))
    assert decoded.text == certificate["hc1"]
    assert decoded.text.startswith("HC1:")

    with page.expect_download() as downloading:
        page.locator(f'button.download-print[data-uvci="{certificate["uvci"]}"]').click()
    printable = folder / "certificate.html"
    downloading.value.save_as(printable)
    printed = page.context.new_page()
    printed.goto(printable.as_uri())
    expect(printed.locator("body")).to_contain_text(certificate["uvci"])
    walk.check("printable-page", printed)
    printed.close()

    # New contact details: a phone, checked by the API (normalised to +381).
    page.fill("#c-phone", "064 123 4567x")
    page.click("#save-contacts")
    expect(page.locator('#contacts-form [data-field="phone"] .field-error')).to_be_visible()
    page.fill("#c-phone", "0641234567")
    page.click("#save-contacts")
    expect(page.locator("#status")).to_have_text(en["saved"])
    expect(page.locator("#c-phone")).to_have_value("+381641234567")
    record = send("GET", f"{stack.urls['registration']}/v1/citizens/{citizen_id}", token)
    assert record.json()["phone"] == "+381641234567"
    walk.check("contacts")

    # Another language, chosen once and remembered.
    cyrillic = messages()["sr-Cyrl"]
    page.select_option("#lang", "sr-Cyrl")
    expect(page.locator("#doses-h")).to_have_text(cyrillic["doses_h"])
    expect(page.locator("html")).to_have_attribute("lang", "sr-Cyrl")
    page.reload()
    page.wait_for_selector("body[data-view=home][data-loaded]")
    expect(page.locator("#appointment-h")).to_have_text(cyrillic["appointment_h"])
    # The day in the person's locale: Serbian month names in Cyrillic script.
    expect(day).to_have_text(re.compile(r"[\u0400-\u04FF]"))
    walk.check("cyrillic")

    # Withdrawing (confirmed in the browser's dialog) ends the session and the booking.
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#withdraw")
    expect(page.locator("#status")).to_have_text(cyrillic["withdrawn"])
    page.wait_for_selector("body[data-view=start]")
    walk.check("withdrawn")
    admin = stack.token("admin")
    record = send("GET", f"{stack.urls['registration']}/v1/citizens/{citizen_id}", admin)
    assert record.json()["status"] == "withdrawn"


def stack_portal(stack: Stack) -> str:
    return f"http://127.0.0.1:{stack.portal_port}/"
