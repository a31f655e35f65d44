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
- qr_png / qr_svg: the QR code images citizens download (zxing-cpp, level Q);
- print_page: the printable HTML page (payload decode, inline SVG QR).

Each phase runs for a fixed time after a warm-up (full: ~25 s in all; --quick: ~6 s)
and records operations per second in bench/results.json under "certificates".
"""

from __future__ import annotations

import argparse
import io
import random
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import segno

from bench.results import record
from immunreg.reference.vaccines import vaccine_catalog
from services.certificates.cose import cwt_claims, encode_hc1, sign1
from services.certificates.hcert import Holder, Vaccination, build_payload
from services.certificates.keys import (
    SigningKey,
    TrustList,
    ensure_dev_signing_key,
    rotate_dev_signing_key,
)
from services.certificates.render import print_page, qr_modules, qr_png, qr_svg
from services.certificates.uvci import new_uvci
from services.certificates.verify import Reason, verify

SECTION = "certificates"
FULL = {"issue": 7.0, "verify": 7.0, "qr_png": 4.0, "qr_svg": 3.0, "print_page": 3.0}
QUICK = {"issue": 1.5, "verify": 1.5, "qr_png": 0.8, "qr_svg": 0.6, "print_page": 0.6}
TRUSTED_KEYS = 20
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
    deadline = started + seconds
    now = started
    while now < deadline:
        operation(count)
        count += 1
        now = time.perf_counter()
    elapsed = now - started
    return {
        "operations": count,
        "seconds": round(elapsed, 3),
        "per_second": round(count / elapsed, 1),
        "microseconds_each": round(elapsed / count * 1e6, 1),
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


def summary(figures: dict[str, Any]) -> str:
    lines = ["certificates (one core, no I/O):"]
    for phase in ("issue", "verify", "qr_png", "qr_png_segno", "qr_svg", "print_page"):
        f = figures[phase]
        lines.append(
            f"  {phase:<11} {f['per_second']:>9,.0f}/s  ({f['microseconds_each']:,.0f} us each)"
        )
    hc1 = figures["hc1_characters"]
    lines.append(
        f"  HC1 {hc1['min']}-{hc1['max']} characters, QR version {figures['qr_version']} (level Q)"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.certificates", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="about 6 s instead of 25 s")
    args = parser.parse_args(argv)
    figures = run(QUICK if args.quick else FULL)
    figures["mode"] = "quick" if args.quick else "full"
    record(SECTION, figures)
    print(summary(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
