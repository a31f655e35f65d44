"""Citizen ids and key configuration (no database)."""

from __future__ import annotations

from pathlib import Path

import pytest

from immunreg.config import Settings
from immunreg.sealing import ensure_key_file
from services.registration.keys import (
    KeyConfigError,
    citizen_id_for,
    is_citizen_id,
    load_key_ring,
)

KEY_A = bytes(range(32))
KEY_B = bytes(range(1, 33))


def test_citizen_ids_are_stable_keyed_and_well_formed() -> None:
    first = citizen_id_for(KEY_A, "0101990710008")
    assert first == citizen_id_for(KEY_A, "0101990710008")
    assert first != citizen_id_for(KEY_A, "1505005715006")
    assert first != citizen_id_for(KEY_B, "0101990710008"), "the id depends on the key"
    assert is_citizen_id(first) and len(first) == 22
    assert not is_citizen_id(first.upper())
    assert not is_citizen_id("c-" + "a" * 19)
    assert not is_citizen_id("0101990710008")


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
