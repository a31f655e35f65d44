"""Signing with a DSC key that never leaves a PKCS#11 token (SoftHSM, from Debian's
`softhsm2`, installed by `make softhsm`): the key is generated inside the token, the
offline CLI makes a CSCA and issues the DSC for the token's public key, and the
service signs a real certificate through the token; the certificate verifies."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pkcs11
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pkcs11 import Attribute, KeyType, ObjectClass
from pkcs11.util.ec import encode_ec_public_key, encode_named_curve_parameters

from services.certificates.keys import kid_of, kid_text

from .conftest import running_certificates

SOFTHSM_MODULE = Path("/usr/lib/softhsm/libsofthsm2.so")
TOKEN = "immunreg-dsc"
KEY_LABEL = "dsc-test"
PIN = "20261206"
IMMUNREG = Path(sys.executable).with_name("immunreg")


@pytest.fixture
def token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh SoftHSM token in a folder of its own; the PIN in a file (mode 0600)."""
    util = shutil.which("softhsm2-util")
    assert util is not None and SOFTHSM_MODULE.exists(), "SoftHSM is missing: run make softhsm"
    tokens = tmp_path / "tokens"
    tokens.mkdir()
    config = tmp_path / "softhsm2.conf"
    config.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\n")
    monkeypatch.setenv("SOFTHSM2_CONF", str(config))
    subprocess.run(
        [util, "--init-token", "--free", "--label", TOKEN, "--pin", PIN, "--so-pin", PIN + "0"],
        check=True,
        capture_output=True,
    )
    pin_file = tmp_path / "pin"
    pin_file.write_text(PIN)
    pin_file.chmod(0o600)
    yield pin_file


def _generate_key_in_token() -> bytes:
    """An EC P-256 key pair made inside the token (private half not extractable); the
    public half as PEM."""
    token = pkcs11.lib(str(SOFTHSM_MODULE)).get_token(token_label=TOKEN)
    with token.open(rw=True, user_pin=PIN) as session:
        parameters = session.create_domain_parameters(
            KeyType.EC,
            {Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")},
            local=True,
        )
        public, private = parameters.generate_keypair(
            store=True,
            label=KEY_LABEL,
            private_template={Attribute.EXTRACTABLE: False, Attribute.SENSITIVE: True},
        )
        assert private[Attribute.EXTRACTABLE] is False
        assert session.get_key(ObjectClass.PRIVATE_KEY, label=KEY_LABEL) == private
        der = encode_ec_public_key(public)
    return serialization.load_der_public_key(der).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _cli(*argv: str) -> str:
    done = subprocess.run(
        [str(IMMUNREG), "certificates", *argv],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ},
    )
    return done.stdout


async def test_a_certificate_signed_with_a_dsc_key_in_softhsm_verifies(
    dsn: str, bootstrap: str, tmp_path: Path, token: Path
) -> None:
    public_pem = tmp_path / "token-public.pem"
    public_pem.write_bytes(_generate_key_in_token())
    offline, issued = tmp_path / "offline", tmp_path / "issued"
    _cli("csca", "create", "--country", "RS", "--out", str(offline))
    out = _cli(
        "dsc",
        "issue",
        "--csca",
        str(offline),
        "--public-key",
        str(public_pem),
        "--out",
        str(issued),
    )
    assert not (issued / "dsc-key.pem").exists(), "the key stays in the token"
    dsc = x509.load_pem_x509_certificate((issued / "dsc.crt").read_bytes())
    kid = kid_text(kid_of(dsc))
    assert kid in out
    service_cscas = tmp_path / "service-csca"  # the certificate only: no CSCA key
    service_cscas.mkdir()
    shutil.copy(offline / "csca.crt", service_cscas / "csca.crt")

    extra = {
        "PKCS11_MODULE": str(SOFTHSM_MODULE),
        "PKCS11_TOKEN_LABEL": TOKEN,
        "PKCS11_KEY_LABEL": KEY_LABEL,
        "PKCS11_PIN_FILE": str(token),
        "DSC_CERT_FILE": str(issued / "dsc.crt"),
        "CSCA_DIR": str(service_cscas),
    }
    async with running_certificates(dsn, bootstrap, tmp_path / "keys", extra) as certificates:
        citizen = certificates.new_citizen()
        await certificates.register(citizen)
        await certificates.administer(certificates.new_dose(citizen))
        [certificate] = await certificates.certificates_of(citizen.citizen_id, 1)
        assert certificate["key_id"] == kid
        verdict = await certificates.verify(certificate["hc1"])
        assert (verdict["valid"], verdict["reason"], verdict["kid"]) == (True, "ok", kid)
        trust = await certificates.json("/v1/trust-list", headers={})
        [entry] = [k for k in trust["keys"] if k["kid"] == kid]
        assert entry["active"] and "immunreg CSCA RS" in entry["csca"]
        # With the key in a token there is nothing to generate: rotation is the CLI's job.
        rotate = await certificates.client.post(
            "/v1/signing-keys/rotate", headers=certificates.admin
        )
        assert rotate.status == 409
    assert not (tmp_path / "keys" / "dcc").exists(), "no development key was made"
