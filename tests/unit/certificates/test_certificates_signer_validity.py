"""A DSC vouches only for certificates issued while it was valid."""

from __future__ import annotations

from datetime import datetime, timedelta

from certificates_support import NOW
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conftest import Sign
from services.certificates.keys import SigningKey, TrustList
from services.certificates.verify import Reason, verify


def signer_valid(start: datetime, end: datetime) -> SigningKey:
    """A self-signed DSC valid from `start` to `end`."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "RS")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .sign(key, hashes.SHA256())
    )
    return SigningKey(private_key=key, certificate=certificate)


def test_a_certificate_issued_inside_the_signers_validity_is_valid(sign: Sign) -> None:
    dsc = signer_valid(NOW - timedelta(days=10), NOW + timedelta(days=10))
    result = verify(sign(key=dsc), TrustList([dsc.trusted]), NOW)
    assert (result.valid, result.reason) == (True, Reason.OK)


def test_a_certificate_issued_after_the_signer_expired_is_refused(sign: Sign) -> None:
    dsc = signer_valid(NOW - timedelta(days=400), NOW - timedelta(days=1))
    result = verify(sign(key=dsc), TrustList([dsc.trusted]), NOW)
    assert (result.valid, result.reason) == (False, Reason.SIGNER_NOT_VALID)
    assert "outside the DSC's validity" in result.detail


def test_a_certificate_dated_before_the_signer_existed_is_refused(sign: Sign) -> None:
    dsc = signer_valid(NOW + timedelta(days=1), NOW + timedelta(days=400))
    result = verify(sign(key=dsc), TrustList([dsc.trusted]), NOW + timedelta(days=2))
    assert (result.valid, result.reason) == (False, Reason.SIGNER_NOT_VALID)


def test_a_signer_that_expired_after_issuing_still_vouches_for_what_it_signed(
    sign: Sign,
) -> None:
    # Certificates outlive their DSC's signing period (EU DCC: DSCs sign for months,
    # certificates stay valid for a year): only the issuing date must fall inside it.
    dsc = signer_valid(NOW - timedelta(days=10), NOW + timedelta(days=1))
    result = verify(sign(key=dsc), TrustList([dsc.trusted]), NOW + timedelta(days=30))
    assert (result.valid, result.reason) == (True, Reason.OK)
