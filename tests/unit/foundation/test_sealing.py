"""Sealing: AES-256-GCM round trips, every kind of tampering refused, RSA-OAEP key wrapping."""

from __future__ import annotations

import base64
import threading
from pathlib import Path

import msgspec
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from immunreg.contracts.common import Sealed
from immunreg.sealing import (
    UnsealError,
    ensure_key_file,
    load_private_key,
    load_public_key,
    new_data_key,
    read_key_file,
    seal,
    unseal,
    unwrap_key,
    wrap_key,
)

AD = b"c-abcdefghijklmnopqrst"


def test_round_trip() -> None:
    key = new_data_key()
    sealed = seal(key, b"Jelena Petrovic, 0101990710008", AD, key_id="k1")
    assert sealed.key_id == "k1" and sealed.alg == "AES-256-GCM"
    assert b"Jelena" not in base64.b64decode(sealed.ciphertext)
    assert unseal(key, sealed, AD) == b"Jelena Petrovic, 0101990710008"


def test_sealed_values_survive_json() -> None:
    key = new_data_key()
    sealed = seal(key, b"x", AD, key_id="k1")
    again = msgspec.json.decode(msgspec.json.encode(sealed), type=Sealed)
    assert unseal(key, again, AD) == b"x"


def test_each_seal_uses_a_fresh_nonce() -> None:
    key = new_data_key()
    a, b = seal(key, b"same", AD, key_id="k"), seal(key, b"same", AD, key_id="k")
    assert a.nonce != b.nonce and a.ciphertext != b.ciphertext


def test_another_key_cannot_unseal() -> None:
    sealed = seal(new_data_key(), b"secret", AD, key_id="k")
    with pytest.raises(UnsealError):
        unseal(new_data_key(), sealed, AD)


def test_other_associated_data_cannot_unseal() -> None:
    key = new_data_key()
    sealed = seal(key, b"secret", AD, key_id="k")
    with pytest.raises(UnsealError):
        unseal(key, sealed, b"c-someone-else")


def flip(b64: str, index: int) -> str:
    raw = bytearray(base64.b64decode(b64))
    raw[index] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


@pytest.mark.parametrize("index", [0, 5, -1, -16])  # plaintext bytes and tag bytes
def test_a_flipped_ciphertext_bit_is_detected(index: int) -> None:
    key = new_data_key()
    sealed = seal(key, b"secret data", AD, key_id="k")
    tampered = msgspec.structs.replace(sealed, ciphertext=flip(sealed.ciphertext, index))
    with pytest.raises(UnsealError):
        unseal(key, tampered, AD)


def test_tampered_nonce_truncation_and_garbage_are_detected() -> None:
    key = new_data_key()
    sealed = seal(key, b"secret data", AD, key_id="k")
    truncated = base64.b64encode(base64.b64decode(sealed.ciphertext)[:-1]).decode()
    for bad in (
        msgspec.structs.replace(sealed, nonce=flip(sealed.nonce, 0)),
        msgspec.structs.replace(sealed, nonce=base64.b64encode(b"short").decode()),
        msgspec.structs.replace(sealed, ciphertext=truncated),
        msgspec.structs.replace(sealed, ciphertext="not base64!"),
        msgspec.structs.replace(sealed, alg="AES-128-CBC"),
    ):
        with pytest.raises(UnsealError):
            unseal(key, bad, AD)


def test_keys_must_be_256_bits() -> None:
    with pytest.raises(ValueError, match="256-bit"):
        seal(b"short", b"x", AD, key_id="k")


@pytest.fixture(scope="module")
def recipient() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem(key: rsa.RSAPrivateKey) -> tuple[bytes, bytes]:
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public


def test_a_wrapped_key_unwraps_only_with_the_recipients_private_key(
    recipient: rsa.RSAPrivateKey,
) -> None:
    private_pem, public_pem = pem(recipient)
    data_key = new_data_key()
    wrapped = wrap_key(load_public_key(public_pem), data_key)
    assert unwrap_key(load_private_key(private_pem), wrapped) == data_key
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(UnsealError):
        unwrap_key(other, wrapped)
    # What a recipient does with it: open values sealed under the data key.
    sealed = seal(data_key, b"Jelena", AD, key_id="k")
    assert unseal(unwrap_key(recipient, wrapped), sealed, AD) == b"Jelena"


def test_weak_or_wrong_recipient_keys_are_refused() -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(ValueError, match="2048"):
        load_public_key(pem(small)[1])
    from cryptography.hazmat.primitives.asymmetric import ec

    ec_public = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(ValueError, match="RSA"):
        load_public_key(ec_public)


def test_key_files_are_created_once_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "kek.key"
    results: list[bytes] = []
    threads = [
        threading.Thread(target=lambda: results.append(ensure_key_file(path))) for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 1 and len(results[0]) == 32
    assert read_key_file(path) == results[0]
    assert path.stat().st_mode & 0o777 == 0o600
    assert list(path.parent.iterdir()) == [path], "no temporary files left behind"


def test_malformed_key_files_are_refused(tmp_path: Path) -> None:
    short = tmp_path / "short.key"
    short.write_text(base64.b64encode(b"x" * 16).decode())
    with pytest.raises(ValueError, match="128-bit"):
        read_key_file(short)
    garbage = tmp_path / "garbage.key"
    garbage.write_text("not base64 at all!")
    with pytest.raises(ValueError, match="base64"):
        read_key_file(garbage)
