"""Sealing personal data so that destroying one key makes it unreadable (crypto-shredding).

- `seal` / `unseal`: AES-256-GCM under a per-subject data key (`CitizenKey`). The
  associated data (e.g. the citizen id) is authenticated, not stored: a sealed value
  copied to another subject, or altered in any bit, does not unseal.
- `new_holder_key_pair`, `wrap_key` / `unwrap_key`: a data key handed to another
  service (a holder) wrapped to an X25519 key pair that the holder made for that one
  citizen (ECDH with an ephemeral key, HKDF-SHA256, AES-256-GCM). The holder deletes
  the private half on erasure, so the wrapped copies that Kafka and the event store
  keep for ever open nothing once the citizen is erased. `prepare_wrap` does the
  citizen-independent half ahead (ephemeral key, ECDH), `PreparedWrap.finish` the rest.
- `ensure_key_file`: a symmetric key kept in a file (base64), created
  atomically on first use for development set-ups.

Sealed values travel as `immunreg.contracts.common.Sealed` (standard base64,
padded). The nonce is 96 random bits per seal: with one key per citizen the
number of seals per key stays far below the birthday bound.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from immunreg.contracts.common import Sealed
from immunreg.keyfiles import write_once

SEAL_ALG = "AES-256-GCM"
WRAP_ALG = "X25519-HKDF-SHA256-A256GCM"
KEY_BYTES = 32
NONCE_BYTES = 12
X25519_BYTES = 32
TAG_BYTES = 16
WRAPPED_BYTES = X25519_BYTES + NONCE_BYTES + KEY_BYTES + TAG_BYTES


class UnsealError(Exception):
    """The sealed value cannot be opened: wrong key, wrong associated data, or tampered."""


def new_data_key() -> bytes:
    """A fresh random 256-bit AES key."""
    return AESGCM.generate_key(bit_length=256)


@dataclass(frozen=True)
class CitizenKey:
    """One citizen's data key; `key_id` travels in every value it sealed."""

    key_id: str
    key: bytes

    @classmethod
    def new(cls) -> CitizenKey:
        """A fresh key with a fresh id."""
        return cls(key_id=uuid.uuid4().hex, key=new_data_key())


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


def new_holder_key_pair() -> tuple[bytes, bytes]:
    """A fresh X25519 key pair (private, public; 32 raw bytes each) that a holder makes
    for one citizen: registration wraps that citizen's data key to the public half, and
    the holder deletes the private half on erasure."""
    private = X25519PrivateKey.generate()
    return (
        private.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        ),
        _raw_public(private.public_key()),
    )


def public_half(private_key: bytes) -> bytes:
    """The raw public key of a raw X25519 private key."""
    return _raw_public(_x25519_private(private_key).public_key())


def _raw_public(key: X25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _x25519_private(raw: bytes) -> X25519PrivateKey:
    if len(raw) != X25519_BYTES:
        raise ValueError(f"an X25519 private key has {X25519_BYTES} bytes, got {len(raw)}")
    return X25519PrivateKey.from_private_bytes(raw)


def _wrapping_key(shared: bytes, ephemeral: bytes, recipient: bytes, context: bytes) -> bytes:
    # Both public keys in the info bind the derived key to this exchange (as in HPKE).
    return HKDF(
        algorithm=hashes.SHA256(),
        length=KEY_BYTES,
        salt=None,
        info=b"immunreg.sealing.wrap|" + ephemeral + recipient + context,
    ).derive(shared)


class PreparedWrap:
    """The half of a wrap that does not depend on the citizen: a fresh ephemeral key
    pair and its ECDH secret with one holder public key (`prepare_wrap`). `finish`
    completes one wrap with it, once: the secret is then dropped, and a second
    `finish` raises, since two wraps under one ephemeral key would share their
    key-encryption material. The secret lives only in this object's memory and is
    never shown by `repr`."""

    __slots__ = ("_shared", "ephemeral_public", "recipient")

    def __init__(self, recipient: bytes, ephemeral_public: bytes, shared: bytes) -> None:
        self.recipient = recipient
        self.ephemeral_public = ephemeral_public
        self._shared: bytes | None = shared

    def __repr__(self) -> str:
        state = "used" if self._shared is None else "unused"
        return f"PreparedWrap(recipient={_b64(self.recipient)}, {state})"

    @property
    def used(self) -> bool:
        """Whether `finish` has consumed this half already."""
        return self._shared is None

    def finish(self, data_key: bytes, context: bytes) -> str:
        """`data_key` wrapped for `context` (HKDF-SHA256 and AES-256-GCM only; see
        `wrap_key` for the layout); RuntimeError if this half was used before."""
        _check_key(data_key)
        shared, self._shared = self._shared, None
        if shared is None:
            raise RuntimeError("a prepared wrap is used once; this one was used already")
        kek = _wrapping_key(shared, self.ephemeral_public, self.recipient, context)
        nonce = os.urandom(NONCE_BYTES)
        ciphertext = AESGCM(kek).encrypt(nonce, data_key, context)
        return _b64(self.ephemeral_public + nonce + ciphertext)


def prepare_wrap(public_key: bytes) -> PreparedWrap:
    """The costly, citizen-independent half of `wrap_key` for raw X25519 `public_key`
    (ephemeral key generation and ECDH), to be finished once with `PreparedWrap.finish`."""
    if len(public_key) != X25519_BYTES:
        raise ValueError(f"an X25519 public key has {X25519_BYTES} bytes, got {len(public_key)}")
    ephemeral = X25519PrivateKey.generate()
    shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(public_key))
    return PreparedWrap(public_key, _raw_public(ephemeral.public_key()), shared)


def wrap_key(public_key: bytes, data_key: bytes, context: bytes) -> str:
    """`data_key` for the holder of the X25519 private key of raw `public_key`, base64.

    ECDH with a fresh ephemeral key, HKDF-SHA256, AES-256-GCM with `context` (e.g. the
    citizen id and the holder) as associated data: a wrapped key copied to another
    citizen or holder does not unwrap. Layout: ephemeral public (32) | nonce (12) |
    ciphertext and tag (48). The two halves, `prepare_wrap` then `finish`, in one go.
    """
    _check_key(data_key)
    return prepare_wrap(public_key).finish(data_key, context)


def unwrap_key(private_key: bytes, wrapped: str, context: bytes) -> bytes:
    """The data key `wrap_key` wrapped; UnsealError if it was not wrapped for this key
    and context, or was altered."""
    try:
        raw = base64.b64decode(wrapped, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise UnsealError("the wrapped key is not valid base64") from exc
    if len(raw) != WRAPPED_BYTES:
        raise UnsealError("the wrapped key has the wrong size")
    ephemeral_public, nonce = raw[:X25519_BYTES], raw[X25519_BYTES : X25519_BYTES + NONCE_BYTES]
    private = _x25519_private(private_key)
    try:
        shared = private.exchange(X25519PublicKey.from_public_bytes(ephemeral_public))
    except ValueError as exc:  # a low-order point: not a key anyone wrapped with
        raise UnsealError("the wrapped key does not open with this private key") from exc
    kek = _wrapping_key(shared, ephemeral_public, _raw_public(private.public_key()), context)
    try:
        key = AESGCM(kek).decrypt(nonce, raw[X25519_BYTES + NONCE_BYTES :], context)
    except InvalidTag as exc:
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


def _check_key(key: bytes) -> None:
    if len(key) != KEY_BYTES:
        raise ValueError(f"expected a {KEY_BYTES * 8}-bit key, got {len(key) * 8} bits")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
