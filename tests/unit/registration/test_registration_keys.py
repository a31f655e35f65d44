"""Citizen ids and key configuration (no database)."""

from __future__ import annotations

from pathlib import Path

import pytest

from immunreg.config import Settings
from immunreg.sealing import ensure_key_file
from services.registration.keys import (
    KeyConfigError,
    KeyRing,
    is_citizen_id,
    legacy_citizen_id,
    load_key_ring,
    new_citizen_id,
)

KEY_A = bytes(range(32))
KEY_B = bytes(range(1, 33))


def test_citizen_ids_are_random_and_well_formed() -> None:
    ids = {new_citizen_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(is_citizen_id(i) and len(i) == 22 for i in ids)
    # Ids from before random ids have the same shape, so every service still takes them.
    assert is_citizen_id(legacy_citizen_id(KEY_A, "0101990710008"))
    first = next(iter(ids))
    assert not is_citizen_id(first.upper())
    assert not is_citizen_id("c-" + "a" * 19)
    assert not is_citizen_id("0101990710008")


def test_the_national_id_index_hash_is_keyed_and_never_a_citizen_id() -> None:
    ring_a, ring_b = KeyRing(id_key=KEY_A, kek=KEY_B), KeyRing(id_key=KEY_B, kek=KEY_A)
    digest = ring_a.national_id_hash("0101990710008")
    assert digest == ring_a.national_id_hash("0101990710008")
    assert digest != ring_a.national_id_hash("1505005715006")
    assert digest != ring_b.national_id_hash("0101990710008"), "it depends on the key"
    assert legacy_citizen_id(KEY_A, "0101990710008")[2:] not in digest


def settings(**extra: str) -> Settings:
    return Settings(
        service="registration", database_url="", db_schema="x", kafka_bootstrap="", extra=extra
    )


def test_explicitly_named_key_files_must_exist(tmp_path: Path) -> None:
    ensure_key_file(tmp_path / "kek.key")
    with pytest.raises(KeyConfigError, match="ID_KEY_FILE"):
        load_key_ring(
            settings(ID_KEY_FILE=str(tmp_path / "missing.key"), KEK_FILE=str(tmp_path / "kek.key"))
        )
    with pytest.raises(KeyConfigError, match="KEK_FILE"):
        load_key_ring(
            settings(ID_KEY_FILE=str(tmp_path / "kek.key"), KEK_FILE=str(tmp_path / "none.key"))
        )


def test_development_defaults_are_created_in_the_state_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IMMUNREG_STATE_DIR", str(tmp_path))
    monkeypatch.delenv("IMMUNREG_KEYS_DIR", raising=False)
    ring = load_key_ring(settings())
    assert (tmp_path / "keys" / "registration-id.key").exists()
    assert (tmp_path / "keys" / "registration-kek.key").exists()
    assert sorted(p.name for p in (tmp_path / "keys").iterdir()) == [
        "registration-id.key",
        "registration-kek.key",
    ], "no key pair for any other service: holders make their own per citizen"
    assert ring.id_key != ring.kek
    assert load_key_ring(settings()) == ring, "the second start reads the same keys"
