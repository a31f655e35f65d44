"""Sealing: AES-256-GCM round trips, every kind of tampering refused, X25519 key wrapping."""

from __future__ import annotations

import base64
import threading
from pathlib import Path

import msgspec
import pytest

from immunreg.contracts.common import Sealed
from immunreg.sealing import (
    WRAPPED_BYTES,
    UnsealError,
    ensure_key_file,
    new_data_key,
    new_holder_key_pair,
    prepare_wrap,
    public_half,
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


CONTEXT = b"c-abcdefghijklmnopqrst|certificates"


def test_a_wrapped_key_unwraps_only_with_the_holders_private_key_and_context() -> None:
    private, public = new_holder_key_pair()
    assert public_half(private) == public
    data_key = new_data_key()
    wrapped = wrap_key(public, data_key, CONTEXT)
    assert unwrap_key(private, wrapped, CONTEXT) == data_key
    assert wrap_key(public, data_key, CONTEXT) != wrapped, "a fresh ephemeral key each time"
    other, _ = new_holder_key_pair()
    with pytest.raises(UnsealError):
        unwrap_key(other, wrapped, CONTEXT)
    with pytest.raises(UnsealError):
        unwrap_key(private, wrapped, b"c-another-citizen-id|certificates")
    # What a holder does with it: open values sealed under the data key.
    sealed = seal(data_key, b"Jelena", AD, key_id="k")
    assert unseal(unwrap_key(private, wrapped, CONTEXT), sealed, AD) == b"Jelena"


def test_a_wrap_finished_from_a_prepared_half_opens_for_its_context_only() -> None:
    private, public = new_holder_key_pair()
    data_key = new_data_key()
    prepared = prepare_wrap(public)
    assert "unused" in repr(prepared) and "used" not in repr(prepared).replace("unused", "")
    wrapped = prepared.finish(data_key, CONTEXT)
    assert len(base64.b64decode(wrapped)) == WRAPPED_BYTES, "the layout wrap_key makes"
    assert base64.b64decode(wrapped)[:32] == prepared.ephemeral_public
    assert unwrap_key(private, wrapped, CONTEXT) == data_key
    with pytest.raises(UnsealError):
        unwrap_key(private, wrapped, b"c-another-citizen-id|certificates")
    with pytest.raises(UnsealError):
        unwrap_key(new_holder_key_pair()[0], wrapped, CONTEXT)


def test_a_prepared_half_is_used_once() -> None:
    _, public = new_holder_key_pair()
    prepared = prepare_wrap(public)
    prepared.finish(new_data_key(), CONTEXT)
    assert prepared.used and "unused" not in repr(prepared)
    # A second wrap under the same ephemeral key (even for another citizen) is refused.
    with pytest.raises(RuntimeError, match="used once"):
        prepared.finish(new_data_key(), b"c-another-citizen-id|certificates")
    with pytest.raises(ValueError, match="32 bytes"):
        prepare_wrap(b"short")


def test_an_altered_or_cut_wrapped_key_is_refused() -> None:
    private, public = new_holder_key_pair()
    raw = base64.b64decode(wrap_key(public, new_data_key(), CONTEXT))
    for i in (0, 31, 32, 43, 44, len(raw) - 1):
        altered = bytearray(raw)
        altered[i] ^= 1
        with pytest.raises(UnsealError):
            unwrap_key(private, base64.b64encode(bytes(altered)).decode(), CONTEXT)
    with pytest.raises(UnsealError, match="size"):
        unwrap_key(private, base64.b64encode(raw[:-1]).decode(), CONTEXT)
    with pytest.raises(UnsealError, match="base64"):
        unwrap_key(private, "not base64!", CONTEXT)
    # A low-order point as the ephemeral key (all zeros) is refused, not an exception.
    zeros = base64.b64encode(bytes(32) + raw[32:]).decode()
    with pytest.raises(UnsealError):
        unwrap_key(private, zeros, CONTEXT)


def test_wrong_sized_holder_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        wrap_key(b"short", new_data_key(), CONTEXT)
    with pytest.raises(ValueError, match="32 bytes"):
        unwrap_key(b"short", wrap_key(new_holder_key_pair()[1], new_data_key(), CONTEXT), CONTEXT)


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
