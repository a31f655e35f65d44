"""The certificates benchmark: EU DCC certificates issued and verified per second.

Run with `.venv/bin/python -m bench.certificates [--quick]` (or `make bench`).

Pure and single-threaded (one core), no database or Kafka - what one worker's CPU
does per certificate:

- issue: new UVCI, ICAO transliteration, hcert payload, CWT, COSE_Sign1 with ES256
  (P-256, `cryptography`), zlib, Base45, `HC1:` - everything the service does to sign
  a certificate except the database writes around it;
- verify: `HC1:` -> Base45 -> inflate -> COSE -> kid lookup in a trust list of 20
  keys -> ES256 check -> claims and expiry (what `POST /v1/verify` computes before
  its revocation lookup);
- qr_png / qr_svg: the QR code images citizens download (zxing-cpp, level Q), each
  encoded on its own;
- qr_images: both, from one encoding (what issuing a certificate renders), beside
  qr_images_before: both as drawn before (two encodings, zxing-cpp's own SVG writer);
- print_page: the printable HTML page (payload decode, inline SVG QR).

Each phase runs for a fixed time after a warm-up (full: ~30 s in all; --quick: ~7 s)
and records operations per second, and the CPU each took (this thread's, which a busy
machine does not inflate), in bench/results.json under "certificates".

Then `downloads`, over HTTP (needs PostgreSQL and Kafka: `make infra`; `--no-http`
skips it): the certificates app runs in this process (`create_app` + `web.AppRunner`
on 127.0.0.1, a fresh schema, no Kafka consumer, no background renderer), its
certificates seeded with SQL (signed as above). N concurrent clients (aiohttp,
keep-alive, an admin token; each request audited as in production) first download
`qr.png` of certificates never downloaded, so each request renders the PNG and SVG
and stores them (the path of a download that comes before the renderer: the
same-run baseline, and what every download cost before images were stored), then
download those same certificates' stored images, then (the floor: the same route
shape with no image) their JSON record `GET /v1/certificates/{uvci}`. Load generator
and server share this process, so the figures are floors for one service process.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import io
import logging
import random
import sys
import tempfile
import time
import urllib.parse
import uuid
import zlib
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import segno
import zxingcpp
from aiohttp import web
from PIL import Image

from bench.common import percentile, progress
from bench.results import record
from immunreg.config import Settings
from immunreg.eventstore.database import check_schema_name
from immunreg.http.app import create_app
from immunreg.http.auth import Role, ensure_dev_keys, issue_token
from immunreg.reference.vaccines import vaccine_catalog
from services.certificates.app import build_service
from services.certificates.cose import cwt_claims, encode_hc1, sign1
from services.certificates.hcert import Holder, Vaccination, build_payload
from services.certificates.keys import (
    SigningKey,
    TrustList,
    ensure_dev_signing_key,
    rotate_dev_signing_key,
)
from services.certificates.render import (
    payload_of,
    png_of,
    print_page,
    qr_images,
    qr_matrix,
    qr_modules,
    qr_png,
    qr_svg,
    svg_of,
)
from services.certificates.uvci import new_uvci
from services.certificates.verify import Reason, uvci_sha256, verify

SECTION = "certificates"
FULL = {
    "issue": 7.0,
    "verify": 7.0,
    "qr_png": 4.0,
    "qr_svg": 3.0,
    "qr_images": 4.0,
    "qr_parts": 1.5,
    "print_page": 3.0,
}
QUICK = {
    "issue": 1.5,
    "verify": 1.5,
    "qr_png": 0.8,
    "qr_svg": 0.6,
    "qr_images": 0.8,
    "qr_parts": 0.4,
    "print_page": 0.6,
}
TRUSTED_KEYS = 20


@dataclasses.dataclass(frozen=True)
class Downloads:
    """The HTTP phase: seconds per kind of download, clients, certificates seeded."""

    seconds: float
    clients: int
    certificates: int


# Seeded certificates outnumber what the render-on-request phase can get through.
FULL_DOWNLOADS = Downloads(seconds=6.0, clients=16, certificates=3000)
QUICK_DOWNLOADS = Downloads(seconds=1.5, clients=8, certificates=800)
GIVEN = ["Jelena", "Marko", "Ljiljana", "Đorđe", "Nikola", "Milica", "Dušan", "Ана", "Жарко"]
FAMILY = ["Petrović", "Jovanović", "Đorđević", "Nikolić", "Šapić", "Ђурић", "Чолић", "Ilić"]


def rate(operation: Callable[[int], Any], seconds: float) -> dict[str, float]:
    """Run `operation(i)` repeatedly for `seconds` (after a warm-up of a tenth of that)."""
    warm_until = time.perf_counter() + seconds / 10
    i = 0
    while time.perf_counter() < warm_until:
        operation(i)
        i += 1
    count = 0
    started = time.perf_counter()
    cpu_started = time.thread_time()
    deadline = started + seconds
    now = started
    while now < deadline:
        operation(count)
        count += 1
        now = time.perf_counter()
    elapsed = now - started
    # The CPU this thread used: on a busy shared machine wall time also counts the waits.
    cpu = time.thread_time() - cpu_started
    return {
        "operations": count,
        "seconds": round(elapsed, 3),
        "per_second": round(count / elapsed, 1),
        "microseconds_each": round(elapsed / count * 1e6, 1),
        "cpu_microseconds_each": round(cpu / count * 1e6, 1),
        "per_cpu_second": round(count / max(cpu, 1e-9), 1),
    }


def issuer(signer: SigningKey, rng: random.Random) -> Callable[[int], str]:
    products = [vaccine_catalog()[code] for code in vaccine_catalog().codes()]
    now = datetime.now(UTC).replace(microsecond=0)

    def issue(i: int) -> str:
        holder = Holder(
            family_name=rng.choice(FAMILY),
            given_name=rng.choice(GIVEN),
            birth_date=date(1940 + i % 60, 1 + i % 12, 1 + i % 28),
        )
        vaccination = Vaccination(
            product=products[i % len(products)],
            dose_number=1 + i % 2,
            total_doses=2,
            vaccination_date=date(2021, 6, 1),
            country="RS",
            issuer="Ministry of Health of the Republic of Serbia",
            uvci=new_uvci(),
        )
        claims = cwt_claims(
            build_payload(holder, vaccination),
            issuer="RS",
            issued_at=now,
            expires_at=now + timedelta(days=365),
        )
        return encode_hc1(sign1(claims, signer.private_key, signer.kid))

    return issue


def run(plan: dict[str, float]) -> dict[str, Any]:
    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as tmp:
        keys_dir = Path(tmp)
        signer = ensure_dev_signing_key(keys_dir)
        others = [rotate_dev_signing_key(keys_dir) for _ in range(TRUSTED_KEYS - 1)]
    trust = TrustList([k.trusted for k in [*others, signer]])
    issue = issuer(signer, rng)
    figures: dict[str, Any] = {"issue": rate(issue, plan["issue"])}

    samples = [issue(i) for i in range(100)]
    now = datetime.now(UTC)
    assert all(verify(s, trust, now).reason is Reason.OK for s in samples[:5])

    def check(i: int) -> None:
        if verify(samples[i % len(samples)], trust, now).reason is not Reason.OK:
            raise AssertionError("a benchmark certificate did not verify")

    figures["verify"] = rate(check, plan["verify"])
    figures["qr_png"] = rate(lambda i: qr_png(samples[i % len(samples)]), plan["qr_png"])
    # The same-run baseline: the pure-Python encoder (segno) the service used before.
    figures["qr_png_segno"] = rate(lambda i: segno_png(samples[i % len(samples)]), plan["qr_png"])
    figures["qr_svg"] = rate(lambda i: qr_svg(samples[i % len(samples)]), plan["qr_svg"])
    # What issuing a certificate renders: both images from one encoding.
    figures["qr_images"] = rate(lambda i: qr_images(samples[i % len(samples)]), plan["qr_images"])
    # The same-run baseline: both images as the service drew them before (encoded twice).
    figures["qr_images_before"] = rate(
        lambda i: images_before(samples[i % len(samples)]), plan["qr_images"]
    )
    # Where qr_images' time goes: the encoding, then each drawing from its modules.
    matrices = [qr_matrix(s) for s in samples]
    figures["qr_encode"] = rate(lambda i: qr_matrix(samples[i % len(samples)]), plan["qr_parts"])
    figures["qr_png_draw"] = rate(lambda i: png_of(matrices[i % len(matrices)]), plan["qr_parts"])
    figures["qr_svg_draw"] = rate(lambda i: svg_of(matrices[i % len(matrices)]), plan["qr_parts"])
    figures["qr_bytes"] = {
        when: {
            "png": round(sum(len(png) for png, _ in drawn) / len(drawn)),
            "svg": round(sum(len(svg) for _, svg in drawn) / len(drawn)),
            "svg_deflated": round(sum(len(zlib.compress(svg)) for _, svg in drawn) / len(drawn)),
        }
        for when, drawn in (
            ("before", [images_before(s) for s in samples[:20]]),
            ("after", [qr_images(s) for s in samples[:20]]),
        )
    }
    issued = datetime.now(UTC)
    figures["print_page"] = rate(
        lambda i: print_page(
            samples[i % len(samples)],
            status="valid",
            revocation_reason=None,
            issued_at=issued,
            expires_at=issued,
        ),
        plan["print_page"],
    )
    lengths = sorted(len(s) for s in samples)
    figures["hc1_characters"] = {"min": lengths[0], "max": lengths[-1]}
    # modules = 17 + 4 x version, plus the 4-module quiet zone on each side
    modules = qr_modules(samples[0])
    figures["qr_version"] = (modules - 17) // 4
    figures["trust_list_keys"] = len(trust)
    figures["cores_used"] = 1
    return figures


def segno_png(hc1: str) -> bytes:
    """The QR PNG as the service drew it before zxing-cpp (segno, pure Python)."""
    out = io.BytesIO()
    segno.make_qr(hc1, error="q").save(out, kind="png", scale=4, border=4)
    return out.getvalue()


def images_before(hc1: str) -> tuple[bytes, bytes]:
    """PNG and SVG as the service drew them before one encoding fed both: each its own
    zxing-cpp encoding, the PNG through Pillow, the SVG by zxing-cpp (zint's writer)."""

    def encoded() -> zxingcpp.Barcode:
        return zxingcpp.create_barcode(hc1, zxingcpp.BarcodeFormat.QRCode, ec_level="Q")

    image = encoded().to_image(scale=4, add_quiet_zones=True)
    height, width = image.shape
    pixels = bytes(memoryview(image))  # type: ignore[arg-type]
    picture = Image.frombuffer("L", (width, height), pixels, "raw", "L", 0, 1)
    out = io.BytesIO()
    picture.convert("1", dither=Image.Dither.NONE).save(out, format="PNG", compress_level=1)
    return out.getvalue(), encoded().to_svg(scale=4, add_quiet_zones=True).encode()


# --- downloads over HTTP ---------------------------------------------------------------


async def _seed(conn: asyncpg.Connection, signed: list[str]) -> list[str]:
    """Certificate rows as issuing would leave them (no images yet); their UVCIs."""
    now = datetime.now(UTC)
    rows = []
    for n, hc1 in enumerate(signed):
        [vaccination] = payload_of(hc1)["v"]
        uvci = vaccination["ci"]
        rows.append(
            (uvci, uvci_sha256(uvci), f"d-bench{n:08d}", f"c-bench{n:08d}", vaccination["mp"],
             vaccination["dn"], vaccination["sd"], date(2021, 6, 1), now,
             now + timedelta(days=365), "bench", hc1)
        )  # fmt: skip
    await conn.executemany(
        """
        INSERT INTO certificates (uvci, uvci_sha256, dose_id, citizen_id, product_code,
            dose_number, total_doses, vaccination_date, issued_at, expires_at, key_id, hc1)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
        """,
        rows,
    )
    return [uvci for uvci, *_ in rows]


async def _download(
    base: str,
    token: str,
    uvcis: list[str],
    plan: Downloads,
    *,
    fresh: bool,
    suffix: str = "/qr.png",
) -> dict[str, Any]:
    """Clients GET the certificate's `suffix` for `plan.seconds`: each certificate once in
    order (fresh), or at random among `uvcis`; the figures."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    sizes: list[int] = []
    following = iter(uvcis)
    rng = random.Random(3)
    headers = {"Authorization": f"Bearer {token}"}
    connector = aiohttp.TCPConnector(limit=plan.clients)
    async with aiohttp.ClientSession(connector=connector) as session:
        deadline = time.perf_counter() + plan.seconds

        async def client() -> None:
            while time.perf_counter() < deadline:
                uvci = next(following, None) if fresh else rng.choice(uvcis)
                if uvci is None:
                    return
                url = f"{base}/v1/certificates/{urllib.parse.quote(uvci, safe='')}{suffix}"
                started = time.perf_counter()
                async with session.get(url, headers=headers) as response:
                    body = await response.read()
                latencies.append(time.perf_counter() - started)
                statuses[response.status] = statuses.get(response.status, 0) + 1
                sizes.append(len(body))

        began = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(plan.clients)))
        elapsed = time.perf_counter() - began
    ordered = sorted(latencies)
    return {
        "requests": len(ordered),
        "seconds": round(elapsed, 2),
        "per_second": round(statuses.get(200, 0) / elapsed, 1),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "latency_ms": {
            "p50": round(percentile(ordered, 50) * 1000, 2),
            "p99": round(percentile(ordered, 99) * 1000, 2),
        },
        "png_bytes_mean": round(sum(sizes) / len(sizes)) if sizes else None,
        "ran_out_of_certificates": fresh and next(following, None) is None,
    }


async def downloads(dsn: str, bootstrap: str, signed: list[str], plan: Downloads) -> dict[str, Any]:
    """Downloads per second of images rendered on the request, then of stored ones."""
    schema = check_schema_name(f"bench_cert_{uuid.uuid4().hex[:10]}")
    with tempfile.TemporaryDirectory() as tmp:
        private, public = ensure_dev_keys(Path(tmp) / "jwt")
        settings = Settings(
            service="certificates",
            database_url=dsn,
            db_schema=schema,
            kafka_bootstrap=bootstrap,
            jwt_jwks_file=str(public),
            extra={"KEYS_DIR": str(Path(tmp) / "dcc"), "QR_RENDER_INTERVAL": "0"},
        )
        # No consumer (its certificates are seeded) and no renderer (the first phase
        # must find every image unrendered).
        app = create_app(dataclasses.replace(build_service(), reactions=None), settings)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        conn = await asyncpg.connect(dsn)
        try:
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            host, port = runner.addresses[0][:2]
            base = f"http://{host}:{port}"
            await conn.execute(f"SET search_path TO {schema}")
            uvcis = await _seed(conn, signed)
            token = issue_token(private.read_bytes(), Role.ADMIN, subject="bench")
            progress(f"certificates at {base}: {plan.clients} clients, {plan.seconds:g} s each")
            rendered = await _download(base, token, uvcis, plan, fresh=True)
            done = [
                r["uvci"]
                for r in await conn.fetch("SELECT uvci FROM certificates WHERE qr_png IS NOT NULL")
            ]
            stored = await _download(base, token, done, plan, fresh=False)
            record_only = await _download(base, token, done, plan, fresh=False, suffix="")
            first = await conn.fetchrow(
                "SELECT hc1, qr_png FROM certificates WHERE uvci = $1", done[0]
            )
            identical = first is not None and bytes(first["qr_png"]) == qr_png(first["hc1"])
        finally:
            await runner.cleanup()
            await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            await conn.close()
    return {
        "clients": plan.clients,
        "rendered_on_request": rendered,
        "stored": stored,
        "certificate_json": record_only,
        "certificates_rendered": len(done),
        "stored_equals_fresh_render": identical,
        "speedup": round(stored["per_second"] / rendered["per_second"], 1)
        if rendered["per_second"]
        else None,
    }


def run_downloads(signed: list[str], plan: Downloads) -> dict[str, Any]:
    """The HTTP phase against the local PostgreSQL and Kafka (started if need be)."""
    from immunreg.localinfra import up

    endpoints = up()
    logging.getLogger().setLevel(logging.WARNING)
    return asyncio.run(
        downloads(endpoints["DATABASE_URL"], endpoints["KAFKA_BOOTSTRAP_SERVERS"], signed, plan)
    )


def summary(figures: dict[str, Any]) -> str:
    lines = ["certificates (one core, no I/O):"]
    phases = ("issue", "verify", "qr_png", "qr_png_segno", "qr_svg", "qr_images")
    parts = ("qr_encode", "qr_png_draw", "qr_svg_draw")
    for phase in (*phases, "qr_images_before", *parts, "print_page"):
        f = figures[phase]
        lines.append(
            f"  {phase:<16} {f['per_second']:>9,.0f}/s  ({f['microseconds_each']:,.0f} us each"
            f", {f['cpu_microseconds_each']:,.0f} us CPU: {f['per_cpu_second']:,.0f} per CPU-s)"
        )
    sizes = figures["qr_bytes"]
    lines.append(f"  image bytes (mean): before {sizes['before']}, after {sizes['after']}")
    hc1 = figures["hc1_characters"]
    lines.append(
        f"  HC1 {hc1['min']}-{hc1['max']} characters, QR version {figures['qr_version']} (level Q)"
    )
    http = figures.get("downloads")
    if http is not None:
        lines.append(f"qr.png downloads over HTTP ({http['clients']} clients, one process):")
        for kind in ("rendered_on_request", "stored", "certificate_json"):
            f = http[kind]
            lines.append(
                f"  {kind:<20} {f['per_second']:>9,.0f}/s  p50 {f['latency_ms']['p50']} ms, "
                f"p99 {f['latency_ms']['p99']} ms, statuses {f['statuses']}"
            )
        lines.append(f"  stored image equals a fresh render: {http['stored_equals_fresh_render']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.certificates", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="about 6 s instead of 25 s")
    parser.add_argument("--no-http", action="store_true", help="skip the downloads over HTTP")
    args = parser.parse_args(argv)
    figures = run(QUICK if args.quick else FULL)
    figures["mode"] = "quick" if args.quick else "full"
    if not args.no_http:
        plan = QUICK_DOWNLOADS if args.quick else FULL_DOWNLOADS
        with tempfile.TemporaryDirectory() as keys:
            issue = issuer(ensure_dev_signing_key(Path(keys)), random.Random(5))
            signed = [issue(i) for i in range(plan.certificates)]
        figures["downloads"] = run_downloads(signed, plan)
    record(SECTION, figures)
    print(summary(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
