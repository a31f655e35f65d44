"""Bearer JWT auth: ES256 tokens naming a role, verified into a `Principal`."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

import jwt
import msgspec
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from immunreg.http.problems import Problem
from immunreg.keyfiles import replace_file, write_once

AUDIENCE = "immunreg"
ALGORITHM = "ES256"
DEV_ISSUER = "immunreg-dev"
PRIVATE_KEY_FILE = "jwt-private.pem"
PUBLIC_KEY_FILE = "jwt-public.pem"


class Role(StrEnum):
    """What a caller is allowed to do, coarsely; routes refine it (own record, own site)."""

    CITIZEN = "citizen"
    SITE_STAFF = "site_staff"
    LOGISTICS = "logistics"
    PUBLIC_HEALTH = "public_health"
    ADMIN = "admin"


class Principal(msgspec.Struct, frozen=True):
    """The verified caller of one request."""

    subject: str
    role: Role
    site_id: str | None = None
    citizen_id: str | None = None

    def can_access_citizen(self, citizen_id: str) -> bool:
        """Citizens see only their own record, admins everything.

        Other roles get False: the route decides what they may see (e.g. site
        staff reading the citizens booked at their site).
        """
        if self.role is Role.ADMIN:
            return True
        return self.role is Role.CITIZEN and self.citizen_id == citizen_id

    def require_own(self, citizen_id: str, detail: str) -> None:
        """Refuse a citizen acting on another citizen's record (`detail` says what).

        Only citizens are held here: which other roles may act at all is the
        route's `roles`, and site staff are held to their site by `require_site`.
        """
        if self.role is Role.CITIZEN and self.citizen_id != citizen_id:
            raise Problem.forbidden(detail, code="other_citizen")

    def require_site(self, site_id: str) -> None:
        """Refuse site staff acting at a site other than their own."""
        if self.role is Role.SITE_STAFF and self.site_id != site_id:
            raise Problem.forbidden(
                f"site staff of {self.site_id} may not act at site {site_id}", code="other_site"
            )


PRINCIPAL_KEY = web.RequestKey("principal", Principal)
"""Where the auth middleware leaves the caller; absent when anonymous."""


def current_principal(request: web.Request) -> Principal | None:
    """The verified caller, or None for an anonymous request."""
    return request.get(PRINCIPAL_KEY)


def require_principal(request: web.Request) -> Principal:
    """The verified caller of a route that declares `roles`.

    The API refuses an anonymous request to such a route before its handler runs
    (401), so a missing principal here is a route that forgot its roles.
    """
    principal = current_principal(request)
    if principal is None:
        raise RuntimeError(f"{request.path}: a handler needs a principal; declare the roles")
    return principal


def _check_role_claims(role: Role, site_id: str | None, citizen_id: str | None) -> str | None:
    if role is Role.SITE_STAFF and not site_id:
        return "a site_staff token needs site_id"
    if role is Role.CITIZEN and not citizen_id:
        return "a citizen token needs citizen_id"
    return None


def ensure_dev_keys(directory: Path) -> tuple[Path, Path]:
    """Create a P-256 key pair in `directory` unless one exists; return (private, public).

    Safe when several processes start at once: the private key appears
    atomically (hard link of a finished temp file), and the public key is
    always derived from whichever private key won.
    """
    directory.mkdir(parents=True, exist_ok=True)
    private_path = directory / PRIVATE_KEY_FILE
    public_path = directory / PUBLIC_KEY_FILE
    if not private_path.exists():
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        write_once(private_path, pem)
    private_key = serialization.load_pem_private_key(private_path.read_bytes(), password=None)
    public_pem = private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if not public_path.exists() or public_path.read_bytes() != public_pem:
        replace_file(public_path, public_pem)
    return private_path, public_path


def issue_token(
    private_key_pem: bytes,
    role: Role | str,
    *,
    subject: str | None = None,
    site_id: str | None = None,
    citizen_id: str | None = None,
    ttl: timedelta = timedelta(hours=12),
    issuer: str = DEV_ISSUER,
    now: datetime | None = None,
) -> str:
    """Sign an ES256 token for `role`; the subject defaults to the citizen id."""
    role = Role(role)
    problem = _check_role_claims(role, site_id, citizen_id)
    if problem:
        raise ValueError(problem)
    if ttl <= timedelta(0):
        raise ValueError("ttl must be positive")
    issued = now or datetime.now(UTC)
    claims: dict[str, Any] = {
        "sub": subject or citizen_id or f"dev-{role.value}",
        "role": role.value,
        "iat": issued,
        "exp": issued + ttl,
        "iss": issuer,
        "aud": AUDIENCE,
        "jti": uuid.uuid4().hex,
    }
    if site_id is not None:
        claims["site_id"] = site_id
    if citizen_id is not None:
        claims["citizen_id"] = citizen_id
    return jwt.encode(claims, private_key_pem, algorithm=ALGORITHM)


class _Claims(msgspec.Struct):
    sub: str
    role: Role
    site_id: str | None = None
    citizen_id: str | None = None


class TokenVerifier:
    """Checks signature (ES256 only), expiry, audience and, if given, issuer."""

    def __init__(
        self,
        public_key_pem: bytes,
        *,
        issuer: str | None = None,
        leeway: timedelta = timedelta(seconds=30),
    ) -> None:
        key = serialization.load_pem_public_key(public_key_pem)
        if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
            raise ValueError("the token key must be an EC P-256 public key")
        self._key = key
        self._issuer = issuer
        self._leeway = leeway

    def verify(self, token: str) -> Principal:
        """The principal a valid token names; Problem 401 with the reason otherwise."""
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],
                audience=AUDIENCE,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": ["exp", "iat", "sub", "aud", "role"]},
            )
        except jwt.ExpiredSignatureError:
            raise _invalid("the token has expired") from None
        except jwt.InvalidAudienceError:
            raise _invalid(f"the token is not meant for audience {AUDIENCE!r}") from None
        except jwt.InvalidIssuerError:
            raise _invalid("the token has an untrusted issuer") from None
        except jwt.InvalidAlgorithmError:
            raise _invalid(f"only {ALGORITHM} tokens are accepted") from None
        except jwt.MissingRequiredClaimError as e:
            raise _invalid(f"the token lacks the {e.claim!r} claim") from None
        except jwt.InvalidSignatureError:
            raise _invalid("the token signature is invalid") from None
        except jwt.InvalidTokenError:
            raise _invalid("the token is malformed or invalid") from None
        try:
            parsed = msgspec.convert(claims, _Claims)
        except msgspec.ValidationError as e:
            raise _invalid(f"the token claims are invalid: {e}") from None
        problem = _check_role_claims(parsed.role, parsed.site_id, parsed.citizen_id)
        if problem:
            raise _invalid(problem)
        return Principal(
            subject=parsed.sub,
            role=parsed.role,
            site_id=parsed.site_id,
            citizen_id=parsed.citizen_id,
        )


def _invalid(reason: str) -> Problem:
    return Problem.unauthorized(reason, invalid_token=True)


def auth_middleware(verifier: TokenVerifier | None) -> Middleware:
    """Verify `Authorization: Bearer` when present; routes check roles.

    A present but bad token is refused here (RFC 6750 `invalid_token`) even on
    public routes, so a client never mistakes a broken token for anonymity.
    With no verifier the service accepts no tokens at all.
    """

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        header = request.headers.get("Authorization")
        if header is not None:
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Problem.unauthorized("use Authorization: Bearer <token>", invalid_token=True)
            if verifier is None:
                raise Problem.unauthorized("this service accepts no bearer tokens")
            request[PRINCIPAL_KEY] = verifier.verify(token.strip())
        return await handler(request)

    return authenticate
