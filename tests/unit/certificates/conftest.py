"""Fixtures for the certificates unit tests: real keys in temporary folders, the EU DCC
schema from tests/data/dcc, and a helper that signs a certificate as the service does."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from certificates_support import DATA, NOW, payload

from services.certificates.cose import cwt_claims, encode_hc1, sign1
from services.certificates.keys import SigningKey, ensure_dev_signing_key


@pytest.fixture(scope="session")
def dcc_schema() -> jsonschema.protocols.Validator:
    schema = json.loads((DATA / "schema" / "DCC.combined-schema.json").read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    validator: jsonschema.protocols.Validator = cls(schema)
    return validator


@pytest.fixture
def keys_dir(tmp_path: Path) -> Path:
    return tmp_path / "dcc"


@pytest.fixture
def signer(keys_dir: Path) -> SigningKey:
    return ensure_dev_signing_key(keys_dir, now=NOW)


Sign = Callable[..., str]


@pytest.fixture
def sign(signer: SigningKey) -> Sign:
    """Sign a payload as the service does (default: valid for a year from NOW)."""

    def make(
        hcert: dict[str, Any] | None = None,
        *,
        key: SigningKey | None = None,
        issued_at: datetime = NOW,
        expires_at: datetime = NOW + timedelta(days=365),
    ) -> str:
        k = key or signer
        claims = cwt_claims(
            hcert or payload(), issuer="RS", issued_at=issued_at, expires_at=expires_at
        )
        return encode_hc1(sign1(claims, k.private_key, k.kid))

    return make
