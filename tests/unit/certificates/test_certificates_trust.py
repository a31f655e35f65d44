"""The chain of trust: only DSCs that chain to a configured CSCA are trusted, a revoked
DSC verifies nothing, and the verifier refuses what it used to let through (no `iat`,
an issuer that is not the DSC's country, a caller's clock set back, a zlib stream
altered or cut short). Also the offline CLI that makes the CSCA and issues DSCs."""

from __future__ import annotations

import argparse
import zlib
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import base45
import cbor2
import pytest
from certificates_support import NOW, clock_of, dcc_test, payload, signer_of
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from conftest import Sign
from services.certificates.cli import add_commands
from services.certificates.cose import encode_hc1, sign1
from services.certificates.keys import (
    SignerRevocation,
    SigningKey,
    TrustedKey,
    TrustList,
    build_trust_list,
    dev_csca,
    kid_of,
)
from services.certificates.pki import (
    CertificateAuthority,
    ChainError,
    check_chain,
    issue_dsc,
    name,
    new_csca,
)
from services.certificates.verify import Reason, verify


def dsc_of(csca: CertificateAuthority, now: datetime = NOW) -> SigningKey:
    """A fresh DSC key and its certificate issued by `csca` at `now`."""
    key = ec.generate_private_key(ec.SECP256R1())
    return SigningKey(key, issue_dsc(csca, key.public_key(), now=now))


def trusted(*keys: SigningKey, source: str = "issuer") -> list[TrustedKey]:
    return [TrustedKey.of(k.certificate, source) for k in keys]


def claims(**values: Any) -> bytes:
    """CWT claims as an issuer might write them (any of iss, iat, exp left out on request)."""
    claim_keys = {"iss": 1, "iat": 6, "exp": 4}
    raw: dict[int, Any] = {-260: {1: payload()}}
    for label, value in values.items():
        if value is not None:
            raw[claim_keys[label]] = (
                int(value.timestamp()) if isinstance(value, datetime) else value
            )
    return cbor2.dumps(raw)


def signed(key: SigningKey, claims_bytes: bytes) -> str:
    return encode_hc1(sign1(claims_bytes, key.private_key, key.kid))


# --- the chain ------------------------------------------------------------------------


def test_a_dsc_issued_by_a_configured_csca_is_trusted(sign: Sign) -> None:
    csca = new_csca("RS", now=NOW)
    dsc = dsc_of(csca)
    trust, refused = build_trust_list(trusted(dsc), [csca.certificate], {})
    assert refused == []
    [key] = list(trust)
    assert key.csca == csca.certificate and key.revoked is None
    assert verify(sign(key=dsc), trust, NOW).reason is Reason.OK


def test_a_forged_dsc_that_does_not_chain_to_a_configured_csca_is_left_out(sign: Sign) -> None:
    csca = new_csca("RS", now=NOW)
    # The forger makes his own "CSCA" under the very same name, and a DSC from it.
    impostor = new_csca("RS", now=NOW, common_name="immunreg CSCA RS")
    forged = dsc_of(impostor)
    assert forged.certificate.issuer == csca.certificate.subject
    # ... or signs a DSC with its own key (self-signed, naming our CSCA as issuer).
    key = ec.generate_private_key(ec.SECP256R1())
    self_signed = SigningKey(
        key,
        x509.CertificateBuilder()
        .subject_name(name("forged DSC", "RS", "immunreg"))
        .issuer_name(csca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=100))
        .sign(key, hashes.SHA256()),
    )
    genuine = dsc_of(csca)
    trust, refused = build_trust_list(trusted(genuine, forged, self_signed), [csca.certificate], {})
    assert [k.kid for k in trust] == [genuine.kid]
    assert {k.kid: why for k, why in refused} == {
        forged.kid: "the CSCA's signature on it does not verify",
        self_signed.kid: "the CSCA's signature on it does not verify",
    }
    for key_ in (forged, self_signed):
        assert verify(sign(key=key_), trust, NOW).reason is Reason.UNKNOWN_KEY


def test_a_foreign_dsc_needs_its_own_csca() -> None:
    test = dcc_test("AT/1.json")
    at_dsc = signer_of(test)
    ours = new_csca("RS", now=NOW)
    trust, refused = build_trust_list([at_dsc], [ours.certificate], {})
    assert len(trust) == 0 and [why for _, why in refused] == ["no configured CSCA issued it"]
    assert verify(test["PREFIX"], trust, clock_of(test)).reason is Reason.UNKNOWN_KEY


def test_a_foreign_dsc_with_its_csca_configured_verifies() -> None:
    croatia = new_csca("HR", now=NOW)
    foreign = dsc_of(croatia)
    hc1 = signed(foreign, claims(iss="HR", iat=NOW, exp=NOW + timedelta(days=30)))
    trust, refused = build_trust_list(
        trusted(foreign, source="trusted"),
        [new_csca("RS", now=NOW).certificate, croatia.certificate],
        {},
    )
    assert refused == []
    assert verify(hc1, trust, NOW).reason is Reason.OK


def _issued(
    csca: CertificateAuthority, *, country: str = "RS", start: datetime = NOW, ca: bool = False
) -> x509.Certificate:
    """A certificate signed by `csca`, with what a rule looks at set as asked."""
    key = ec.generate_private_key(ec.SECP256R1())
    return (
        x509.CertificateBuilder()
        .subject_name(name("DSC", country, "immunreg"))
        .issuer_name(csca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=100))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(csca.private_key, hashes.SHA256())
    )


def test_the_chain_rules() -> None:
    csca = new_csca("RS", now=NOW)
    assert check_chain(dsc_of(csca).certificate, [csca.certificate]) == csca.certificate
    assert check_chain(_issued(csca), [csca.certificate]) == csca.certificate
    refusals = {
        "country HR is not its CSCA's": _issued(csca, country="HR"),
        "outside the CSCA's validity": _issued(csca, start=NOW - timedelta(days=30)),
        "a CA certificate cannot be a document signer": _issued(csca, ca=True),
    }
    for why, certificate in refusals.items():
        with pytest.raises(ChainError, match=why):
            check_chain(certificate, [csca.certificate])
    with pytest.raises(ChainError, match="no configured CSCA"):
        check_chain(dsc_of(csca).certificate, [])


# --- revocation -----------------------------------------------------------------------


def test_a_revoked_dsc_stays_listed_and_verifies_nothing(sign: Sign) -> None:
    csca = new_csca("RS", now=NOW)
    revoked_dsc, other = dsc_of(csca), dsc_of(csca)
    hc1 = sign(key=revoked_dsc)
    before, _ = build_trust_list(trusted(revoked_dsc, other), [csca.certificate], {})
    assert verify(hc1, before, NOW).reason is Reason.OK
    revocation = SignerRevocation("key_compromise", NOW)
    after, _ = build_trust_list(
        trusted(revoked_dsc, other), [csca.certificate], {revoked_dsc.kid: revocation}
    )
    listed = after.get(revoked_dsc.kid)
    assert listed is not None and listed.revoked == revocation
    result = verify(hc1, after, NOW)
    assert (result.valid, result.reason) == (False, Reason.SIGNER_REVOKED)
    assert "key_compromise" in result.detail
    assert verify(sign(key=other), after, NOW).reason is Reason.OK


# --- the verifier's own checks --------------------------------------------------------


def test_a_cwt_without_an_issuing_date_is_refused(signer: SigningKey) -> None:
    trust = TrustList([signer.trusted])
    hc1 = signed(signer, claims(iss="RS", exp=NOW + timedelta(days=30)))
    result = verify(hc1, trust, NOW)
    assert (result.valid, result.reason) == (False, Reason.MALFORMED)
    assert "issuing date (claim 6)" in result.detail
    dated = signed(signer, claims(iss="RS", iat=NOW, exp=NOW + timedelta(days=30)))
    assert verify(dated, trust, NOW).reason is Reason.OK


def test_an_issuer_other_than_the_dscs_country_is_refused(signer: SigningKey) -> None:
    trust = TrustList([signer.trusted])
    assert signer.trusted.country == "RS"
    hc1 = signed(signer, claims(iss="HR", iat=NOW, exp=NOW + timedelta(days=30)))
    result = verify(hc1, trust, NOW)
    assert (result.valid, result.reason) == (False, Reason.ISSUER_MISMATCH)
    assert result.detail == "issued as HR by a DSC of RS"
    # `iss` is optional in the DCC: a certificate that names no issuer claims nothing false.
    silent = signed(signer, claims(iat=NOW, exp=NOW + timedelta(days=30)))
    assert verify(silent, trust, NOW).reason is Reason.OK


def test_a_caller_cannot_set_the_clock_back_to_make_an_expired_certificate_valid(
    sign: Sign,
) -> None:
    since = NOW - timedelta(days=60)
    signer = dsc_of(new_csca("RS", now=since), now=since)
    trust = TrustList([signer.trusted])
    hc1 = sign(key=signer, issued_at=NOW - timedelta(days=40), expires_at=NOW - timedelta(days=10))
    back_then = NOW - timedelta(days=20)  # when it was still valid
    assert verify(hc1, trust, back_then).reason is Reason.OK  # a verifier's own clock
    result = verify(hc1, trust, NOW, at=back_then)  # a caller's `at`
    assert (result.valid, result.reason) == (False, Reason.EXPIRED)
    # ... while asking about a later moment is stricter, as it should be.
    fresh = sign(key=signer, expires_at=NOW + timedelta(days=10))
    assert verify(fresh, trust, NOW, at=NOW - timedelta(days=1)).reason is Reason.OK
    assert verify(fresh, trust, NOW, at=NOW + timedelta(days=11)).reason is Reason.EXPIRED


def test_an_hc1_altered_near_its_end_or_cut_short_is_refused() -> None:
    # Both were accepted as valid before the zlib stream's end and checksum were checked.
    test = dcc_test("AT/1.json")
    hc1, trust, clock = test["PREFIX"], TrustList([signer_of(test)]), clock_of(test)
    assert verify(hc1, trust, clock).reason is Reason.OK
    altered = hc1[:-8] + "L" + hc1[-7:]
    assert altered != hc1
    result = verify(altered, trust, clock)
    assert (result.valid, result.reason) == (False, Reason.MALFORMED)
    cut = verify(hc1[:-3], trust, clock)
    assert (cut.valid, cut.reason) == (False, Reason.MALFORMED)
    assert "cut short" in cut.detail
    base45_alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
    for position in range(len(hc1) - 8, len(hc1)):
        for character in base45_alphabet:
            changed = hc1[:position] + character + hc1[position + 1 :]
            if changed != hc1:
                assert not verify(changed, trust, clock).valid, (position, character)


def test_data_after_the_zlib_stream_is_refused() -> None:
    test = dcc_test("AT/1.json")
    compressed = base45.b45decode(test["PREFIX"][4:]) + b"\x00\x00"
    padded = "HC1:" + base45.b45encode(compressed).decode()
    assert zlib.decompress(compressed[:-2])  # the stream itself is whole
    result = verify(padded, TrustList([signer_of(test)]), clock_of(test))
    assert (result.reason, result.detail) == (
        Reason.MALFORMED,
        "data follows the end of the zlib stream",
    )


# --- the offline CLI ------------------------------------------------------------------


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="immunreg")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


def test_the_cli_creates_a_csca_offline_and_issues_dscs_that_chain_to_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    offline, transfer, hsm = tmp_path / "offline", tmp_path / "dsc", tmp_path / "hsm"
    assert run("certificates", "csca", "create", "--country", "rs", "--out", str(offline)) == 0
    assert (offline / "csca-key.pem").stat().st_mode & 0o077 == 0
    csca = x509.load_pem_x509_certificate((offline / "csca.crt").read_bytes())
    assert b"PRIVATE" not in (offline / "csca.crt").read_bytes()

    assert run("certificates", "dsc", "issue", "--csca", str(offline), "--out", str(transfer)) == 0
    dsc = x509.load_pem_x509_certificate((transfer / "dsc.crt").read_bytes())
    assert check_chain(dsc, [csca]) == csca
    key = serialization.load_pem_private_key((transfer / "dsc-key.pem").read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    public = dsc.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert key.public_key().public_numbers() == public.public_numbers()
    assert not list(transfer.glob("csca*"))
    assert "DSC kid" in capsys.readouterr().out

    # A key that lives in an HSM: only its public half is given, no key file is written.
    held = ec.generate_private_key(ec.SECP256R1())
    hsm.mkdir()
    (hsm / "public.pem").write_bytes(
        held.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    out = hsm / "issued"
    args = ["--csca", str(offline), "--out", str(out), "--public-key", str(hsm / "public.pem")]
    assert run("certificates", "dsc", "issue", *args) == 0
    assert not (out / "dsc-key.pem").exists()
    issued = x509.load_pem_x509_certificate((out / "dsc.crt").read_bytes())
    assert check_chain(issued, [csca]) == csca and kid_of(issued) != kid_of(dsc)
    with pytest.raises(SystemExit, match="exists"):
        run("certificates", "csca", "create", "--country", "RS", "--out", str(offline))


def test_the_dev_dsc_chains_to_the_dev_csca(signer: SigningKey, keys_dir: Path) -> None:
    csca = dev_csca(keys_dir)
    trust, refused = build_trust_list([signer.trusted], [csca], {})
    assert refused == [] and trust.get(signer.kid) is not None
