from __future__ import annotations

import stat
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from immunreg.http import (
    Principal,
    Problem,
    Role,
    TokenVerifier,
    TrustedKeys,
    ensure_dev_keys,
    issue_token,
)


def test_dev_keys_are_created_once_and_private_key_is_0600(tmp_path: Path) -> None:
    private, public = ensure_dev_keys(tmp_path / "keys")
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    first = (private.read_bytes(), public.read_bytes())
    assert ensure_dev_keys(tmp_path / "keys") == (private, public)
    assert (private.read_bytes(), public.read_bytes()) == first
    public.unlink()
    ensure_dev_keys(tmp_path / "keys")
    assert public.read_bytes() == first[1]


def test_issued_token_round_trips_into_a_principal(tmp_path: Path) -> None:
    private, public = ensure_dev_keys(tmp_path)
    verifier = TokenVerifier(TrustedKeys.read(public))
    token = issue_token(private.read_bytes(), Role.SITE_STAFF, subject="nurse-7", site_id="s-1")
    assert verifier.verify(token) == Principal("nurse-7", Role.SITE_STAFF, site_id="s-1")
    citizen = issue_token(private.read_bytes(), "citizen", citizen_id="c-9")
    assert verifier.verify(citizen) == Principal("c-9", Role.CITIZEN, citizen_id="c-9")


def test_issue_refuses_incomplete_role_claims(tmp_path: Path) -> None:
    private, _ = ensure_dev_keys(tmp_path)
    with pytest.raises(ValueError, match="site_id"):
        issue_token(private.read_bytes(), Role.SITE_STAFF)
    with pytest.raises(ValueError, match="citizen_id"):
        issue_token(private.read_bytes(), Role.CITIZEN)
    with pytest.raises(ValueError, match="ttl"):
        issue_token(private.read_bytes(), Role.ADMIN, ttl=timedelta(0))
    with pytest.raises(ValueError):
        issue_token(private.read_bytes(), "mayor")


def test_verifier_checks_issuer_when_asked(tmp_path: Path) -> None:
    private, public = ensure_dev_keys(tmp_path)
    token = issue_token(private.read_bytes(), Role.ADMIN, issuer="somebody")
    with pytest.raises(Problem) as info:
        TokenVerifier(TrustedKeys.read(public), issuer="immunreg-dev").verify(token)
    assert info.value.status == 401


def test_citizens_see_only_their_own_record() -> None:
    me = Principal("c-1", Role.CITIZEN, citizen_id="c-1")
    assert me.can_access_citizen("c-1")
    assert not me.can_access_citizen("c-2")
    assert Principal("root", Role.ADMIN).can_access_citizen("c-2")
    assert not Principal("n", Role.SITE_STAFF, site_id="s").can_access_citizen("c-2")


def test_a_citizen_is_refused_another_citizens_record() -> None:
    Principal("c-1", Role.CITIZEN, citizen_id="c-1").require_own("c-1", "own only")
    with pytest.raises(Problem) as info:
        Principal("c-1", Role.CITIZEN, citizen_id="c-1").require_own("c-2", "own only")
    assert (info.value.status, info.value.body.code) == (403, "other_citizen")
    # Other roles are held by the route's roles, not here.
    Principal("root", Role.ADMIN).require_own("c-2", "own only")
    Principal("n", Role.SITE_STAFF, site_id="s").require_own("c-2", "own only")


def test_site_staff_act_only_at_their_site() -> None:
    staff = Principal("n", Role.SITE_STAFF, site_id="s-1")
    staff.require_site("s-1")
    with pytest.raises(Problem) as info:
        staff.require_site("s-2")
    assert info.value.status == 403
    Principal("l", Role.LOGISTICS).require_site("s-2")


def test_a_remembered_token_is_refused_once_it_expires(tmp_path: Path) -> None:
    """The verifier remembers verified tokens, but never past their expiry."""
    private, public = ensure_dev_keys(tmp_path)
    verifier = TokenVerifier(TrustedKeys.read(public), leeway=timedelta(0))
    issued = datetime.now(UTC) - timedelta(seconds=59)  # expires in about a second
    token = issue_token(private.read_bytes(), Role.ADMIN, ttl=timedelta(seconds=60), now=issued)
    assert verifier.verify(token).role is Role.ADMIN
    assert verifier.verify(token).role is Role.ADMIN  # remembered
    time.sleep(1.2)
    with pytest.raises(Problem) as info:
        verifier.verify(token)
    assert info.value.body.detail == "the token has expired"
