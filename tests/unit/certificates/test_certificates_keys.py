"""Keys: development CSCA and DSC, configured files, PKCS#11 settings, trusted folders."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from certificates_support import dcc_test, signer_of
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from immunreg.config import Settings
from services.certificates.keys import (
    CSCA_CERT_FILE,
    CSCA_FILE,
    KeyConfigError,
    dev_csca,
    ensure_dev_signing_key,
    kid_of,
    load_signing_key,
    load_trusted_dir,
    offline_dir,
    rotate_dev_signing_key,
    signer_config,
)
from services.certificates.pki import VACCINATION_EKU


def settings(**extra: str) -> Settings:
    return Settings(
        service="certificates", database_url="", db_schema="x", kafka_bootstrap="", extra=extra
    )


def test_dev_keys_are_made_once_and_chain_to_the_csca(tmp_path: Path) -> None:
    key = ensure_dev_signing_key(tmp_path)
    assert ensure_dev_signing_key(tmp_path).kid == key.kid
    csca = dev_csca(tmp_path)
    assert key.certificate.issuer == csca.subject
    key.certificate.verify_directly_issued_by(csca)
    assert isinstance(key.private_key, ec.EllipticCurvePrivateKey)
    assert key.private_key.curve.name == "secp256r1"
    der = key.certificate.public_bytes(serialization.Encoding.DER)
    assert key.kid == kid_of(key.certificate) == hashlib.sha256(der).digest()[:8]
    eku = key.certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [VACCINATION_EKU]
    assert key.trusted.key_usage == frozenset({"v"})
    # The CSCA's private key is not where the service reads its keys: only its certificate.
    assert not (tmp_path / CSCA_FILE).exists()
    assert b"PRIVATE KEY" not in (tmp_path / CSCA_CERT_FILE).read_bytes()
    assert not any(b"PRIVATE KEY" in p.read_bytes() for p in tmp_path.glob("csca*"))
    offline = offline_dir(tmp_path) / CSCA_FILE
    assert offline.parent != tmp_path and offline.stat().st_mode & 0o077 == 0
    assert b"PRIVATE KEY" in offline.read_bytes()


def test_a_csca_key_left_beside_the_dscs_by_an_earlier_version_is_moved_out(
    tmp_path: Path,
) -> None:
    key = ensure_dev_signing_key(tmp_path)
    offline = offline_dir(tmp_path) / CSCA_FILE
    (tmp_path / CSCA_FILE).write_bytes(offline.read_bytes())  # the old layout
    offline.unlink()
    assert ensure_dev_signing_key(tmp_path).kid == key.kid
    assert not (tmp_path / CSCA_FILE).exists() and offline.exists()
    key.certificate.verify_directly_issued_by(dev_csca(tmp_path))


def test_concurrent_first_starts_agree_on_one_csca(tmp_path: Path) -> None:
    with ThreadPoolExecutor(4) as pool:
        keys = list(pool.map(lambda _: ensure_dev_signing_key(tmp_path), range(4)))
    newest = ensure_dev_signing_key(tmp_path)
    csca = dev_csca(tmp_path)
    for key in keys:
        key.certificate.verify_directly_issued_by(csca)
    assert newest.kid in {k.kid for k in keys}


def test_rotation_makes_the_newest_key_the_signer(tmp_path: Path) -> None:
    first = ensure_dev_signing_key(tmp_path)
    second = rotate_dev_signing_key(tmp_path)
    assert second.kid != first.kid
    assert load_signing_key(signer_config(settings(KEYS_DIR=str(tmp_path)))).kid == second.kid


def test_configured_files_are_used_and_checked(tmp_path: Path) -> None:
    source = ensure_dev_signing_key(tmp_path / "made")
    key_file, cert_file = tmp_path / "dsc.key", tmp_path / "dsc.crt"
    assert isinstance(source.private_key, ec.EllipticCurvePrivateKey)
    key_file.write_bytes(
        source.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_file.write_bytes(source.certificate.public_bytes(serialization.Encoding.PEM))
    config = signer_config(settings(DSC_KEY_FILE=str(key_file), DSC_CERT_FILE=str(cert_file)))
    assert not config.development
    assert load_signing_key(config).kid == source.kid

    other = ensure_dev_signing_key(tmp_path / "other")
    cert_file.write_bytes(other.certificate.public_bytes(serialization.Encoding.PEM))
    with pytest.raises(KeyConfigError, match="not the private key's"):
        load_signing_key(config)
    with pytest.raises(KeyConfigError, match="both"):
        signer_config(settings(DSC_KEY_FILE=str(key_file)))
    missing = signer_config(settings(DSC_KEY_FILE="/nope.key", DSC_CERT_FILE="/nope.crt"))
    with pytest.raises(KeyConfigError):
        load_signing_key(missing)


def test_pkcs11_settings_must_be_complete() -> None:
    with pytest.raises(KeyConfigError, match=r"PKCS11_TOKEN_LABEL.*DSC_CERT_FILE"):
        signer_config(settings(PKCS11_MODULE="/usr/lib/softhsm/libsofthsm2.so"))
    complete = {
        "PKCS11_MODULE": "/usr/lib/softhsm/libsofthsm2.so",
        "PKCS11_TOKEN_LABEL": "dsc",
        "PKCS11_KEY_LABEL": "dsc-2026",
        "PKCS11_PIN_FILE": "/run/secrets/pin",
        "DSC_CERT_FILE": "/etc/dsc.crt",
    }
    config = signer_config(settings(**complete))
    assert config.pkcs11 is not None and config.pkcs11.key_label == "dsc-2026"
    assert not config.development
    with pytest.raises(KeyConfigError, match="not both"):
        signer_config(settings(**complete, DSC_KEY_FILE="/etc/dsc.key"))


def test_trusted_dir_reads_pem_and_der(tmp_path: Path) -> None:
    at, nl = signer_of(dcc_test("AT/1.json")), signer_of(dcc_test("NL/085-NL-vaccination.json"))
    (tmp_path / "at.pem").write_bytes(at.certificate.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "nl.der").write_bytes(nl.certificate.public_bytes(serialization.Encoding.DER))
    (tmp_path / "notes.txt").write_text("ignored")
    keys = load_trusted_dir(tmp_path)
    assert {(k.kid, k.country, k.source) for k in keys} == {
        (at.kid, "AT", "trusted"),
        (nl.kid, "NL", "trusted"),
    }
    assert load_trusted_dir(None) == []
    (tmp_path / "broken.pem").write_text("-----BEGIN CERTIFICATE-----\nxx\n")
    with pytest.raises(KeyConfigError, match=r"broken\.pem"):
        load_trusted_dir(tmp_path)
