"""The QR renderer's setting."""

from __future__ import annotations

import pytest

from immunreg.config import Settings
from services.certificates.images import RENDER_INTERVAL, render_interval


def settings(**extra: str) -> Settings:
    return Settings(
        service="certificates", database_url="", db_schema="x", kafka_bootstrap="", extra=extra
    )


def test_the_renderer_runs_every_second_unless_told_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CERTIFICATES_QR_RENDER_INTERVAL", raising=False)
    monkeypatch.delenv("QR_RENDER_INTERVAL", raising=False)
    assert render_interval(settings()) == RENDER_INTERVAL == 1.0
    assert render_interval(settings(QR_RENDER_INTERVAL="0.25")) == 0.25
    monkeypatch.setenv("CERTIFICATES_QR_RENDER_INTERVAL", "5")
    assert render_interval(settings()) == 5.0


def test_zero_runs_no_renderer_and_a_negative_interval_is_refused() -> None:
    assert render_interval(settings(QR_RENDER_INTERVAL="0")) is None
    with pytest.raises(ValueError, match="CERTIFICATES_QR_RENDER_INTERVAL"):
        render_interval(settings(QR_RENDER_INTERVAL="-1"))
