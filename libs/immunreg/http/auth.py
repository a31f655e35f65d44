"""Bearer JWT auth: ES256 tokens naming a role, verified into a `Principal`."""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections import OrderedDict
from collections.abc import Collection, Iterator, Mapping
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import jwt
import msgspec
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from immunreg.config import PRODUCTION, Settings
from immunreg.http.jwks import (
    ALGORITHM,
    DEV_KID_PREFIX,
    JWKS_FILE,
    PRIVATE_KEY_FILE,
    SIGNING_DIR,
    TRUSTED_DIR,
    TrustedKeys,
    public_jwk,
    readable_private_keys,
    signing_key_id,
)
from immunreg.http.problems import Problem
from immunreg.keyfiles import replace_file, write_once
from immunreg.messaging.connection import KafkaSecurity
from immunreg.paths import keys_dir

DEV_ISSUER = "immunreg-dev"
DEV_AUDIENCE = "immunreg"
MAX_LIFETIME = timedelta(hours=12)
# Tokens a verifier remembers as verified (a client sends one token with many requests;
# checking its ES256 signature again costs about 0.15 ms of CPU each time).
VERIFIED_TOKENS = 10_000
"""The longest a token may live (exp - iat) unless configured (`JWT_MAX_LIFETIME`)."""


class Role(StrEnum):
    """What a caller is allowed to do, coarsely; routes refine it (own record, own site)."""

    CITIZEN = "citizen"
    SITE_STAFF = "site_staff"
    LOGISTICS = "logistics"
    PUBLIC_HEALTH = "public_health"
    ADMIN = "admin"


class Reach(StrEnum):
    """How far a role reaches on one route: the second half of a route's rule."""

    ANY = "any"
    """Every record the route serves."""
    OWN = "own"
    """A citizen's own record only (`Principal.require_own`)."""
    SITE = "site"
    """Site staff at their own site only (`Principal.require_site`)."""
    LINKED = "linked"
    """Site staff: a citizen with an appointment or a dose at their site, or any citizen
    when the request states why (`Access-Reason`); both recorded in the audit log."""


# What a role reaches when a route lists the role without saying: the checks every
# handler made before rules were declared (citizens held to their own record, site
# staff to their site), so a bare set of roles keeps meaning what it always did.
DEFAULT_REACH = {Role.CITIZEN: Reach.OWN, Role.SITE_STAFF: Reach.SITE}

ACCESS_REASON_HEADER = "Access-Reason"
"""Why a caller reads a record their role does not reach by itself. A header and not a
query field: it stays out of URLs (access logs, proxies, caches, browser history),
where free text about a person does not belong, and means the same on every route."""
MAX_REASON_LENGTH = 200

AccessRule = Mapping[Role, Reach]
"""Who may call a route and how far each reaches: one per route, on its declaration."""


def access_rule(roles: Collection[Role] | AccessRule) -> dict[Role, Reach]:
    """A route's rule from its declaration: a mapping as it is, a set of roles with each
    role's default reach (own record for citizens, own site for site staff, else any)."""
    if isinstance(roles, Mapping):
        return {Role(role): Reach(reach) for role, reach in roles.items()}
    return {Role(role): DEFAULT_REACH.get(Role(role), Reach.ANY) for role in roles}


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
        _record(AuthorisationCheck("own", citizen_id))
        if self.role is Role.ADMIN:
            return True
        return self.role is Role.CITIZEN and self.citizen_id == citizen_id

    def require_own(self, citizen_id: str, detail: str) -> None:
        """Refuse a citizen acting on another citizen's record (`detail` says what).

        Only citizens are held here: which other roles may act at all is the
        route's `roles`, and site staff are held to their site by `require_site`.
        """
        _record(AuthorisationCheck("own", citizen_id, detail))
        if self.role is Role.CITIZEN and self.citizen_id != citizen_id:
            raise Problem.forbidden(detail, code="other_citizen")

    def require_site(self, site_id: str) -> None:
        """Refuse site staff acting at a site other than their own."""
        _record(AuthorisationCheck("site", site_id))
        if self.role is Role.SITE_STAFF and self.site_id != site_id:
            raise Problem.forbidden(
                f"site staff of {self.site_id} may not act at site {site_id}", code="other_site"
            )


class AuthorisationCheck(msgspec.Struct, frozen=True, array_like=True):
    """One own-record (`own`) or own-site (`site`) check a handler made of its caller."""

    kind: Literal["own", "site"]
    value: str
    detail: str = ""


_CHECKS: ContextVar[list[AuthorisationCheck] | None] = ContextVar(
    "authorisation_checks", default=None
)


def _record(check: AuthorisationCheck) -> None:
    checks = _CHECKS.get()
    if checks is not None and check not in checks:
        checks.append(check)


@contextlib.contextmanager
def recording_checks() -> Iterator[list[AuthorisationCheck]]:
    """Collect the own-record and own-site checks made inside the block (this task's)."""
    outer = _CHECKS.get()
    checks: list[AuthorisationCheck] = []
    token = _CHECKS.set(checks)
    try:
        yield checks
    finally:
        _CHECKS.reset(token)
        # The route's own record (api.py) sees what an idempotent run inside it checked.
        if outer is not None:
            outer.extend(c for c in checks if c not in outer)


def recheck(principal: Principal | None, checks: list[AuthorisationCheck]) -> None:
    """Run recorded checks again for `principal` (Problem 403 when one fails)."""
    for check in checks:
        if principal is None:
            raise Problem.forbidden("this answer needs a bearer token")
        if check.kind == "own":
            principal.require_own(check.value, check.detail)
        else:
            principal.require_site(check.value)


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
    """Create a development P-256 key pair under `directory` unless one exists.

    Returns (private key PEM, JWKS of its public half). The two live in separate
    folders (`jwt-signing/`, `jwt-trusted/`), so the folder services trust holds no
    private key. Safe when several processes start at once: the private key
    appears atomically, and the JWKS is always derived from whichever key won.
    """
    private_path = directory / SIGNING_DIR / PRIVATE_KEY_FILE
    jwks_path = directory / TRUSTED_DIR / JWKS_FILE
    if not private_path.exists():
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        write_once(private_path, pem)
    private_pem = private_path.read_bytes()
    private_key = serialization.load_pem_private_key(private_pem, password=None)
    jwk = public_jwk(private_key.public_key(), signing_key_id(private_pem), ALGORITHM)
    document = json.dumps({"keys": [jwk]}, indent=2).encode() + b"\n"
    if not jwks_path.exists() or jwks_path.read_bytes() != document:
        replace_file(jwks_path, document)
    return private_path, jwks_path


def issue_token(
    private_key_pem: bytes,
    role: Role | str,
    *,
    subject: str | None = None,
    site_id: str | None = None,
    citizen_id: str | None = None,
    ttl: timedelta = timedelta(hours=12),
    max_lifetime: timedelta = MAX_LIFETIME,
    issuer: str = DEV_ISSUER,
    audience: str = DEV_AUDIENCE,
    kid: str | None = None,
    now: datetime | None = None,
) -> str:
    """Sign an ES256 token for `role`, naming its key (`kid`) and living at most `max_lifetime`.

    The subject defaults to the citizen id; the kid to the one `ensure_dev_keys`
    publishes for this key. Every token the project mints (the `immunreg token`
    command, demo data, tests) comes from here.
    """
    role = Role(role)
    problem = _check_role_claims(role, site_id, citizen_id)
    if problem:
        raise ValueError(problem)
    if ttl <= timedelta(0):
        raise ValueError("ttl must be positive")
    if ttl > max_lifetime:
        raise ValueError(f"ttl {ttl} is longer than the maximum token lifetime {max_lifetime}")
    issued = now or datetime.now(UTC)
    claims: dict[str, Any] = {
        "sub": subject or citizen_id or f"dev-{role.value}",
        "role": role.value,
        "iat": issued,
        "exp": issued + ttl,
        "iss": issuer,
        "aud": audience,
        "jti": uuid.uuid4().hex,
    }
    if site_id is not None:
        claims["site_id"] = site_id
    if citizen_id is not None:
        claims["citizen_id"] = citizen_id
    headers = {"kid": kid or signing_key_id(private_key_pem)}
    return jwt.encode(claims, private_key_pem, algorithm=ALGORITHM, headers=headers)


class _Claims(msgspec.Struct):
    sub: str
    role: Role
    iat: int
    exp: int
    site_id: str | None = None
    citizen_id: str | None = None


class TokenVerifier:
    """Checks the algorithm, the key (by kid), signature, issuer, audience, expiry and lifetime."""

    def __init__(
        self,
        keys: TrustedKeys,
        *,
        issuer: str = DEV_ISSUER,
        audience: str = DEV_AUDIENCE,
        max_lifetime: timedelta = MAX_LIFETIME,
        leeway: timedelta = timedelta(seconds=30),
    ) -> None:
        self._keys = keys
        self._issuer = issuer
        self._audience = audience
        self._max_lifetime = max_lifetime
        self._leeway = leeway
        # token -> (principal, expires): a token is immutable and so are this verifier's
        # keys, issuer and audience, so only its expiry can change the answer.
        self._verified: OrderedDict[str, tuple[Principal, float]] = OrderedDict()

    def verify(self, token: str) -> Principal:
        """The principal a valid token names; Problem 401 with the reason otherwise."""
        known = self._verified.get(token)
        if known is not None:
            principal, expires = known
            if time.time() < expires:
                self._verified.move_to_end(token)
                return principal
            del self._verified[token]
        principal, expires = self._verify(token)
        self._verified[token] = (principal, expires)
        if len(self._verified) > VERIFIED_TOKENS:
            self._verified.popitem(last=False)
        return principal

    def _verify(self, token: str) -> tuple[Principal, float]:
        """Every check, and until when (epoch seconds) the token passes them."""
        algorithm = self._keys.algorithm
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise _invalid("the token is malformed") from None
        # Checked before any key is touched: `none`, HS256 with a public key as the
        # secret, and every other algorithm confusion end here.
        if header.get("alg") != algorithm:
            raise _invalid(f"only {algorithm} tokens are accepted")
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise _invalid("the token does not name its key (kid)")
        key = self._keys.get(kid)
        if key is None:
            raise _invalid(f"the token is signed with an unknown key {kid!r}")
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[algorithm],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": ["exp", "iat", "iss", "aud", "sub", "role"]},
            )
        except jwt.ExpiredSignatureError:
            raise _invalid("the token has expired") from None
        except jwt.InvalidAudienceError:
            raise _invalid(f"the token is not meant for audience {self._audience!r}") from None
        except jwt.InvalidIssuerError:
            raise _invalid("the token has an untrusted issuer") from None
        except jwt.MissingRequiredClaimError as e:
            raise _invalid(f"the token lacks the {e.claim!r} claim") from None
        except jwt.InvalidSignatureError:
            raise _invalid("the token signature is invalid") from None
        except jwt.ImmatureSignatureError:
            raise _invalid("the token is not valid yet (issued in the future)") from None
        except jwt.InvalidTokenError:
            raise _invalid("the token is malformed or invalid") from None
        try:
            parsed = msgspec.convert(claims, _Claims)
        except msgspec.ValidationError as e:
            raise _invalid(f"the token claims are invalid: {e}") from None
        lifetime = timedelta(seconds=parsed.exp - parsed.iat)
        if lifetime > self._max_lifetime:
            raise _invalid(
                f"the token lives {lifetime}, longer than the maximum {self._max_lifetime}"
            )
        problem = _check_role_claims(parsed.role, parsed.site_id, parsed.citizen_id)
        if problem:
            raise _invalid(problem)
        principal = Principal(
            subject=parsed.sub,
            role=parsed.role,
            site_id=parsed.site_id,
            citizen_id=parsed.citizen_id,
        )
        # As PyJWT decides: expired once exp is at least the leeway in the past.
        return principal, parsed.exp + self._leeway.total_seconds()


def token_verifier(settings: Settings) -> TokenVerifier | None:
    """The verifier a service starts with, from its settings.

    Development: the configured JWKS, else the generated development keys (None
    while none were generated: the service then accepts no tokens, as before).
    Production (`IMMUNREG_ENV=production`): RuntimeError naming everything that is
    wrong (see `production_problems`), which `immunreg serve` reports as a failed start.
    """
    if settings.environment == PRODUCTION:
        problems = production_problems(settings)
        if problems:
            raise RuntimeError(
                f"{settings.service} refuses to start in production mode: " + "; ".join(problems)
            )
    path = _jwks_path(settings)
    if not path.exists():
        if settings.jwt_jwks_file:
            raise RuntimeError(f"JWT_JWKS_FILE {path} does not exist")
        return None
    try:
        keys = TrustedKeys.read(path, settings.jwt_algorithm)
    except ValueError as e:
        raise RuntimeError(f"JWT_JWKS_FILE: {e}") from None
    return TokenVerifier(
        keys,
        issuer=settings.jwt_issuer or DEV_ISSUER,
        audience=settings.jwt_audience or DEV_AUDIENCE,
        max_lifetime=timedelta(seconds=settings.jwt_max_lifetime),
    )


def production_problems(settings: Settings) -> list[str]:
    """What production mode refuses: generated development keys, no issuer or
    audience configured, a signing key the service itself could read, Kafka
    clients that would not authenticate."""
    problems = KafkaSecurity.from_env().problems()
    if not settings.jwt_issuer:
        problems.append("JWT_ISSUER is not set (the issuer every token must name)")
    if not settings.jwt_audience:
        problems.append("JWT_AUDIENCE is not set (the audience every token must name)")
    if not settings.jwt_jwks_file:
        problems.append("JWT_JWKS_FILE is not set: the generated development keys would be trusted")
        return problems
    path = Path(settings.jwt_jwks_file)
    try:
        keys = TrustedKeys.read(path, settings.jwt_algorithm)
    except OSError as e:
        problems.append(f"JWT_JWKS_FILE {path} cannot be read ({e.strerror})")
    except ValueError as e:
        problems.append(f"JWT_JWKS_FILE {e}")
    else:
        development = [kid for kid in keys.key_ids if kid.startswith(DEV_KID_PREFIX)]
        if development:
            problems.append(f"JWT_JWKS_FILE {path} trusts generated development keys {development}")
    readable = readable_private_keys(path.parent)
    if readable:
        names = ", ".join(str(p) for p in readable)
        problems.append(
            f"the private half of a signing key is readable beside the trusted keys: {names}"
        )
    return problems


def _jwks_path(settings: Settings) -> Path:
    if settings.jwt_jwks_file:
        return Path(settings.jwt_jwks_file)
    return keys_dir() / TRUSTED_DIR / JWKS_FILE


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
