"""Sealing personal data so that destroying one key makes it unreadable (crypto-shredding).

- `seal` / `unseal`: AES-256-GCM under a per-subject data key. The associated
  data (e.g. the citizen id) is authenticated, not stored: a sealed value
  copied to another subject, or altered in any bit, does not unseal.
- `wrap_key` / `unwrap_key`: RSA-OAEP with SHA-256 (MGF1 SHA-256, no label),
  to hand a data key to another service that holds the private key.
- `ensure_key_file`: a symmetric key kept in a file (base64), created
  atomically on first use for development set-ups.
- `ensure_rsa_key_pair`: the same for an RSA key pair (PEM), e.g. the one a
  recipient service unwraps granted data keys with in development.

Sealed values travel as `immunreg.contracts.common.Sealed` (standard base64,
padded). The nonce is 96 random bits per seal: with one key per citizen the
number of seals per key stays far below the birthday bound.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from immunreg.contracts.common import Sealed
from immunreg.keyfiles import replace_file, write_once

SEAL_ALG = "AES-256-GCM"
WRAP_ALG = "RSA-OAEP-256"
KEY_BYTES = 32
NONCE_BYTES = 12
MIN_RSA_BITS = 2048


class UnsealError(Exception):
    """The sealed value cannot be opened: wrong key, wrong associated data, or tampered."""


def new_data_key() -> bytes:
    """A fresh random 256-bit AES key."""
    return AESGCM.generate_key(bit_length=256)


def key_fingerprint(key: bytes) -> str:
    """A short identifier of a symmetric key (for telling keys apart, not secret)."""
    return hashlib.sha256(b"immunreg-key-fingerprint:" + key).hexdigest()[:16]


def seal(key: bytes, plaintext: bytes, associated_data: bytes, *, key_id: str) -> Sealed:
    """Encrypt and authenticate `plaintext` under `key`, bound to `associated_data`."""
    _check_key(key)
    nonce = os.urandom(NONCE_BYTES)
    ciphertext = AESGCM(key).encrypt(nonce, plaintext, associated_data)
    return Sealed(key_id=key_id, nonce=_b64(nonce), ciphertext=_b64(ciphertext), alg=SEAL_ALG)


def unseal(key: bytes, sealed: Sealed, associated_data: bytes) -> bytes:
    """The plaintext `seal` was given; UnsealError if anything does not match."""
    _check_key(key)
    if sealed.alg != SEAL_ALG:
        raise UnsealError(f"unsupported algorithm {sealed.alg!r}")
    try:
        nonce = base64.b64decode(sealed.nonce, validate=True)
        ciphertext = base64.b64decode(sealed.ciphertext, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise UnsealError("sealed value is not valid base64") from exc
    if len(nonce) != NONCE_BYTES:
        raise UnsealError("sealed value has a nonce of the wrong size")
    try:
        return AESGCM(key).decrypt(nonce, ciphertext, associated_data)
    except InvalidTag as exc:
        raise UnsealError("wrong key, wrong associated data, or tampered ciphertext") from exc


def load_public_key(pem: bytes) -> rsa.RSAPublicKey:
    """An RSA public key (at least 2048 bits) from PEM, for wrapping data keys."""
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("a key recipient needs an RSA public key")
    if key.key_size < MIN_RSA_BITS:
        raise ValueError(f"RSA keys need at least {MIN_RSA_BITS} bits, got {key.key_size}")
    return key


def load_private_key(pem: bytes, password: bytes | None = None) -> rsa.RSAPrivateKey:
    """An RSA private key from PEM, for unwrapping data keys granted to this service."""
    key = serialization.load_pem_private_key(pem, password=password)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("unwrapping needs an RSA private key")
    return key


def _oaep() -> padding.OAEP:
    return padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


def wrap_key(public_key: rsa.RSAPublicKey, data_key: bytes) -> str:
    """`data_key` encrypted for the holder of the private key (RSA-OAEP-256), base64."""
    _check_key(data_key)
    return _b64(public_key.encrypt(data_key, _oaep()))


def unwrap_key(private_key: rsa.RSAPrivateKey, wrapped: str) -> bytes:
    """The data key `wrap_key` wrapped; UnsealError if it was not wrapped for this key."""
    try:
        key = private_key.decrypt(base64.b64decode(wrapped, validate=True), _oaep())
    except (binascii.Error, ValueError) as exc:
        raise UnsealError("the wrapped key does not open with this private key") from exc
    _check_key(key)
    return key


def read_key_file(path: Path) -> bytes:
    """A 256-bit key stored as base64 text in `path`."""
    try:
        key = base64.b64decode(path.read_text().strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"{path} does not hold a base64 key") from exc
    if len(key) != KEY_BYTES:
        raise ValueError(f"{path} holds a {len(key) * 8}-bit key; 256 bits are needed")
    return key


def ensure_key_file(path: Path) -> bytes:
    """Read the key in `path`, creating a random one first if the file does not exist.

    Safe when several processes start at once: the file appears atomically
    (hard link of a finished temporary file), and every process reads the
    one that won.
    """
    if not path.exists():
        write_once(path, (_b64(new_data_key()) + "\n").encode())
    return read_key_file(path)


def ensure_rsa_key_pair(private_path: Path, public_path: Path) -> rsa.RSAPrivateKey:
    """The RSA private key in `private_path`, creating a 3072-bit one first if missing,
    and its public half (SubjectPublicKeyInfo PEM) in `public_path`.

    Safe when several processes start at once: the private key appears
    atomically (hard link of a finished temporary file) and the public key is
    always derived from whichever private key won.
    """
    if not private_path.exists():
        key = rsa.generate_private_key(public_exponent=65537, key_size=3072)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        write_once(private_path, pem)
    private_key = load_private_key(private_path.read_bytes())
    public_pem = private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if not public_path.exists() or public_path.read_bytes() != public_pem:
        replace_file(public_path, public_pem)
    return private_key


def _check_key(key: bytes) -> None:
    if len(key) != KEY_BYTES:
        raise ValueError(f"expected a {KEY_BYTES * 8}-bit key, got {len(key) * 8} bits")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
