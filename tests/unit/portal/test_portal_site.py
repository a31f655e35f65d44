"""The citizens' portal's server: the pages, their config and the words in three languages."""

from __future__ import annotations

import re

from aiohttp.test_utils import TestClient, TestServer

from immunreg.portal import STATIC, create_portal
from immunreg.portal.strings import EN, I18N_JS, SR_LATN, i18n_js, messages
from immunreg.serbian import latin_left, to_cyrillic

URLS = {
    "registration": "http://127.0.0.1:8081",
    "booking": "http://127.0.0.1:8082",
    "administration": "http://127.0.0.1:8084",
    "certificates": "https://certificates.example.rs/api",
}


async def test_the_pages_and_config_are_served_with_a_policy_naming_the_services() -> None:
    async with TestClient(TestServer(create_portal(URLS))) as client:
        page = await client.get("/")
        assert page.status == 200
        assert 'src="/static/portal.js"' in await page.text()
        policy = page.headers["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
        [connect] = [d for d in policy.split("; ") if d.startswith("connect-src")]
        assert set(connect.split()[2:]) == {
            "http://127.0.0.1:8081",
            "http://127.0.0.1:8082",
            "http://127.0.0.1:8084",
            "https://certificates.example.rs",
        }
        config = await (await client.get("/config.json")).json()
        assert config["services"] == URLS
        assert config["timezone"] == "Europe/Belgrade"
        assert any(m["code"] == "70092" for m in config["municipalities"])
        for name in ("portal.js", "portal.css", "i18n.js"):
            assert (await client.get(f"/static/{name}")).status == 200, name


async def test_health_and_readiness_answer_for_the_probes() -> None:
    # deploy/k8s probes these; the portal keeps no state, so ready is alive.
    async with TestClient(TestServer(create_portal(URLS))) as client:
        for path in ("/healthz", "/readyz"):
            answer = await client.get(path)
            assert answer.status == 200, path
            assert await answer.json() == {"status": "ok"}
        assert (await client.get("/nothing-here")).status == 404


def test_every_language_has_every_word_and_the_committed_file_is_current() -> None:
    assert EN.keys() == SR_LATN.keys()
    assert I18N_JS.read_text("utf-8") == i18n_js(), "run `python -m immunreg.portal.strings`"
    # Every key the page and script use exists.
    used = set(re.findall(r'data-i18n="([a-z_]+)"', (STATIC / "index.html").read_text()))
    used |= set(re.findall(r'\bt\("([a-z_]+)"', (STATIC / "portal.js").read_text()))
    assert used and used <= EN.keys(), used - EN.keys()


def test_cyrillic_is_the_latin_letter_for_letter_leaving_placeholders_and_acronyms() -> None:
    assert to_cyrillic("Ljiljana Njegoš, džep, Đorđe") == "Љиљана Његош, џеп, Ђорђе"
    assert to_cyrillic("Doza {n} od {total}: QR kod (PNG)") == "Доза {n} од {total}: QR код (PNG)"
    left = {k: v for k, v in messages()["sr-Cyrl"].items() if latin_left(v)}
    assert not left, left
