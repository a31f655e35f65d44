"""The certificates' public-key infrastructure: a country signing CA (CSCA) issues
document signer certificates (DSCs); a DSC is trusted only when it chains to a CSCA.

Pure X.509 work (no files, no network): `new_csca` and `issue_dsc` are what the
offline CLI (`immunreg certificates csca create`, `... dsc issue`) and the
development keys use; `check_chain` is what the trust list is built with.

The rules a DSC must meet to chain to a CSCA (EU DCC certificate governance):
- its issuer is the CSCA's subject and the CSCA's key signed it;
- the CSCA is a CA (basic constraints) allowed to sign certificates (key usage);
- it was issued while the CSCA was valid (its `not_before` inside the CSCA's validity);
- it is not itself a CA;
- its country (subject C) is the CSCA's: a country's CSCA vouches for its own signers.
A DSC past its validity still chains: it vouches for what it signed while valid
(the verifier checks each certificate's issuing date against it).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

CSCA_VALIDITY = timedelta(days=3650)
DSC_VALIDITY = timedelta(days=730)
# Backdated a little so that a certificate signed at once is inside the validity
# even on a machine whose clock is slightly behind the one that issued.
BACKDATE = timedelta(minutes=5)
VACCINATION_EKU = x509.ObjectIdentifier("1.3.6.1.4.1.1847.2021.1.2")


class ChainError(ValueError):
    """A DSC that does not chain to any configured CSCA (the message says why)."""


@dataclass(frozen=True)
class CertificateAuthority:
    """A CSCA: its private key (offline) and its certificate (what verifiers are given)."""

    private_key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate


def country_of(certificate: x509.Certificate) -> str | None:
    """The subject's country (C), if it names one."""
    values = certificate.subject.get_attributes_for_oid(NameOID.COUNTRY_NAME)
    return str(values[0].value) if values else None


def name(common_name: str, country: str, organisation: str) -> x509.Name:
    """A subject name: country, organisation, common name."""
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, country),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _key_usage(*, signs_certificates: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not signs_certificates,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=signs_certificates,
        crl_sign=signs_certificates,
        encipher_only=False,
        decipher_only=False,
    )


def new_csca(
    country: str,
    *,
    now: datetime,
    common_name: str | None = None,
    organisation: str = "immunreg",
    validity: timedelta = CSCA_VALIDITY,
) -> CertificateAuthority:
    """A new self-signed CSCA (EC P-256) for `country`, valid from `now` (minus a little)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = name(common_name or f"immunreg CSCA {country}", country, organisation)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(signs_certificates=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    return CertificateAuthority(key, certificate)


def issue_dsc(
    csca: CertificateAuthority,
    public_key: ec.EllipticCurvePublicKey,
    *,
    now: datetime,
    common_name: str | None = None,
    validity: timedelta = DSC_VALIDITY,
) -> x509.Certificate:
    """A DSC for `public_key` (vaccination certificates only), signed by `csca`, valid from
    `now` (minus a little) for `validity`, never beyond the CSCA."""
    country = country_of(csca.certificate)
    if country is None:
        raise ChainError("the CSCA names no country")
    organisation = csca.certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    return (
        x509.CertificateBuilder()
        .subject_name(
            name(
                common_name or f"immunreg DSC {country} {now:%Y%m%dT%H%M%S%fZ}",
                country,
                str(organisation[0].value) if organisation else "immunreg",
            )
        )
        .issuer_name(csca.certificate.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(min(now + validity, csca.certificate.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(signs_certificates=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([VACCINATION_EKU]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(csca.private_key.public_key()),
            False,
        )
        .sign(csca.private_key, hashes.SHA256())
    )


def _extension(certificate: x509.Certificate, kind: type[x509.ExtensionType]) -> object | None:
    try:
        return certificate.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def check_csca(certificate: x509.Certificate) -> None:
    """Refuse a certificate that cannot be a CSCA (not a CA, or may not sign certificates)."""
    constraints = _extension(certificate, x509.BasicConstraints)
    if not isinstance(constraints, x509.BasicConstraints) or not constraints.ca:
        raise ChainError("not a CA certificate (basic constraints)")
    usage = _extension(certificate, x509.KeyUsage)
    if isinstance(usage, x509.KeyUsage) and not usage.key_cert_sign:
        raise ChainError("its key usage does not allow signing certificates")


def _issued_by(dsc: x509.Certificate, csca: x509.Certificate) -> str | None:
    """Why `dsc` does not chain to `csca`, or None when it does."""
    if dsc.issuer != csca.subject:
        return "issued by another CA"
    try:
        dsc.verify_directly_issued_by(csca)
    except (InvalidSignature, ValueError, TypeError):
        return "the CSCA's signature on it does not verify"
    if not csca.not_valid_before_utc <= dsc.not_valid_before_utc <= csca.not_valid_after_utc:
        return "issued outside the CSCA's validity"
    constraints = _extension(dsc, x509.BasicConstraints)
    if isinstance(constraints, x509.BasicConstraints) and constraints.ca:
        return "a CA certificate cannot be a document signer"
    if (country_of(dsc) or "").upper() != (country_of(csca) or "").upper():
        return f"its country {country_of(dsc)} is not its CSCA's ({country_of(csca)})"
    return None


def check_chain(dsc: x509.Certificate, cscas: Iterable[x509.Certificate]) -> x509.Certificate:
    """The CSCA `dsc` chains to; ChainError naming why not when none does."""
    reasons = []
    for csca in cscas:
        reason = _issued_by(dsc, csca)
        if reason is None:
            return csca
        if dsc.issuer == csca.subject:
            reasons.append(reason)
    raise ChainError(reasons[0] if reasons else "no configured CSCA issued it")
