"""Certificates: signed, verifiable EU DCC vaccination certificates (port 8085).

Certificates are issued, re-issued and revoked by reactions (handlers.py);
this API serves them and verifies anyone's:

- a citizen reads their own certificates (admins any): the `HC1:` string, the
  QR code as PNG or SVG, a printable page;
- anyone verifies an `HC1:` string, and downloads the trust list (every DSC
  that signed here, and the foreign ones configured, each checked against a
  configured CSCA; revoked ones marked) and the revocation list (hashed UVCIs)
  to verify offline;
- an admin rotates the development signing key, and revokes a DSC.

A UVCI in a path must be percent-encoded (`#` is `%23`).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web

from immunreg import audit, holderkeys
from immunreg.contracts.certificates import CONTEXT
from immunreg.holderkeys import HOLDER_KEYS_SQL
from immunreg.http.api import Api, json_response
from immunreg.http.app import SETTINGS_KEY, STORE_KEY, background_task
from immunreg.http.auth import Reach, Role, require_principal
from immunreg.http.keys import METRICS_KEY, POOL_KEY
from immunreg.http.middleware import metadata_from_request
from immunreg.http.openapi import Media
from immunreg.http.problems import FieldError, Problem
from immunreg.http.shutdown import SHUTDOWN_KEY
from immunreg.http.versioning import (
    Page,
    content_etag,
    decode_cursor,
    encode_cursor,
    not_modified,
    page_limit,
)
from immunreg.messaging.reactions import Provided
from immunreg.service import Resource, Service

from . import handlers, images, readmodel, render
from .cli import add_commands
from .handlers import CertificateMetrics, Dependencies, Issuer
from .schemas import (
    CertificateView,
    CitizenCertificates,
    RevocationList,
    SigningKeyRevocation,
    TrustListEntry,
    TrustListView,
    VerifyRequest,
    VerifyResult,
    trust_list_entry,
    trust_list_view,
)
from .uvci import is_uvci

# What a citizen is told on asking for another citizen's record (403 other_citizen).
OTHER_CITIZEN = "a citizen may read only their own certificates"

SCHEMA_FILE = Path(__file__).with_name("schema.sql")
ISSUER_KEY = web.AppKey("certificate_issuer", Issuer)
# Certificates carry names and doses: citizens their own, admins any; site staff none
# (they have the dose record in administration). Every read is audited.
OWNERS = {Role.CITIZEN: Reach.OWN, Role.ADMIN: Reach.ANY}
CITIZEN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,99}")
# The page needs no script and loads nothing: say so to the browser.
PAGE_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"

api = Api(
    "immunreg certificates",
    "1.0.0",
    "EU Digital COVID Certificates for every recorded dose: fetch (HC1, QR, printable page), "
    "verify, trust list and revocation list.",
)


def _issuer(request: web.Request) -> Issuer:
    return request.app[ISSUER_KEY]


async def _certificate(
    request: web.Request, image: readmodel.QrFormat | None = None
) -> tuple[CertificateView, bytes | None]:
    """The certificate the path names, and its stored QR image in `image` format if asked
    (read in the same query: a download is one round trip besides the audit)."""
    uvci = request.match_info["uvci"]
    pool = request.app[POOL_KEY]
    found = await readmodel.certificate(pool, uvci, image) if is_uvci(uvci) else None
    if found is None:
        raise Problem.not_found("no certificate has this UVCI (percent-encode # as %23)")
    view, stored = found
    require_principal(request).require_own(view.citizen_id, OTHER_CITIZEN)
    await audit.citizen_read(request, view.citizen_id, resource_id=view.uvci)
    return view, stored


async def _signed(
    request: web.Request, image: readmodel.QrFormat | None = None
) -> tuple[CertificateView, str, bytes | None]:
    found, stored = await _certificate(request, image)
    if found.hc1 is None:
        raise Problem.citizen_erased()
    return found, found.hc1, stored


# --- a citizen's certificates ----------------------------------------------------------


@api.get(
    "/v1/citizens/{citizen_id}/certificates",
    responses={200: CitizenCertificates, 403: None, 404: None},
    roles=OWNERS,
    summary="A citizen's certificates",
    tags=["certificates"],
)
async def citizen_certificates(request: web.Request) -> web.StreamResponse:
    """Every certificate issued for the citizen's doses (newest first, revoked ones too,
    each with its `HC1:` string) and the doses whose certificate waits for the citizen's
    names. A citizen token reads only its own."""
    citizen_id = request.match_info["citizen_id"]
    if not CITIZEN_ID.fullmatch(citizen_id):
        raise Problem.not_found("no citizen has this id")
    require_principal(request).require_own(citizen_id, OTHER_CITIZEN)
    await audit.citizen_read(request, citizen_id)
    return json_response(await readmodel.citizen_certificates(request.app[POOL_KEY], citizen_id))


@api.get(
    "/v1/certificates/{uvci}",
    responses={200: CertificateView, 403: None, 404: None},
    roles=OWNERS,
    summary="One certificate",
    tags=["certificates"],
)
async def read_certificate(request: web.Request) -> web.StreamResponse:
    """The certificate, its status and its `HC1:` string (null once the citizen was erased)."""
    found, _ = await _certificate(request)
    return json_response(found)


@api.get(
    "/v1/certificates/{uvci}/qr.png",
    responses={200: Media({"image/png": None}), 304: None, 403: None, 404: None, 410: None},
    roles=OWNERS,
    summary="The certificate's QR code (image/png)",
    tags=["certificates"],
)
async def qr_png(request: web.Request) -> web.StreamResponse:
    """The `HC1:` string as a QR code, error correction level Q, PNG: rendered once, as
    the certificate was issued, and stored. The ETag lets a client that has it skip the
    download (304)."""
    return await _qr_image(request, "png", "image/png")


@api.get(
    "/v1/certificates/{uvci}/qr.svg",
    responses={
        200: Media({"image/svg+xml": None}),
        304: None,
        403: None,
        404: None,
        410: None,
    },
    roles=OWNERS,
    summary="The certificate's QR code (image/svg+xml)",
    tags=["certificates"],
)
async def qr_svg(request: web.Request) -> web.StreamResponse:
    """The `HC1:` string as a QR code, error correction level Q, SVG (stored and ETag as
    for PNG)."""
    return await _qr_image(request, "svg", "image/svg+xml")


async def _qr_image(
    request: web.Request, image: readmodel.QrFormat, content_type: str
) -> web.Response:
    """The stored QR image, or 304 when the client's copy (by ETag) is of this very `HC1:`."""
    found, hc1, body = await _signed(request, image)
    tag = content_etag(content_type, hc1)
    headers = {"Cache-Control": "private, no-cache", "ETag": tag}
    if not_modified(request, tag):
        return web.Response(status=304, headers=headers)
    if body is None:  # not rendered yet: render it now, once
        body = await images.render_now(
            request.app[POOL_KEY], _issuer(request).metrics, found.uvci, image
        )
    if body is None:  # erased since `_signed` read it
        raise Problem.citizen_erased()
    return web.Response(body=body, content_type=content_type, headers=headers)


@api.get(
    "/v1/certificates/{uvci}/print",
    responses={200: Media({"text/html": None}), 403: None, 404: None, 410: None},
    roles=OWNERS,
    summary="The certificate as a printable page (text/html)",
    tags=["certificates"],
)
async def print_certificate(request: web.Request) -> web.StreamResponse:
    """Names, birth date, the vaccination, the UVCI and the QR code, laid out for A4 (the
    QR as stored with the certificate at issue, read in the same query)."""
    found, hc1, stored_svg = await _signed(request, "svg")
    page = render.print_page(
        hc1,
        status=found.status,
        revocation_reason=found.revocation_reason,
        issued_at=found.issued_at,
        expires_at=found.expires_at,
        stored_svg=stored_svg,
    )
    return web.Response(
        text=page,
        content_type="text/html",
        charset="utf-8",
        headers={"Content-Security-Policy": PAGE_POLICY, "Cache-Control": "private"},
    )


# --- verifying ------------------------------------------------------------------------


@api.post(
    "/v1/verify",
    body=VerifyRequest,
    responses={200: VerifyResult},
    rate_limited=True,
    summary="Verify an HC1 certificate",
    tags=["verification"],
)
async def verify_certificate(request: web.Request, body: VerifyRequest) -> web.StreamResponse:
    """Valid or not, and why: `malformed` (including no `iat`, or a zlib stream cut short or
    failing its checksum), `unknown_key` (kid not on the trust list), `bad_signature`,
    `signer_revoked` (its DSC was revoked), `issuer_mismatch` (the CWT issuer is not the
    DSC's country), `signer_not_valid` (issued outside the DSC's validity period),
    `wrong_key_usage` (the DSC may not sign this kind of certificate), `revoked` (on this
    registry's revocation list), `expired` (past the CWT expiry). Expiry is checked at the
    later of the server's clock and `at`: `at` may ask about a later moment, never make an
    expired certificate valid. Public; nothing is stored."""
    if body.at is not None and body.at.tzinfo is None:
        raise Problem.unprocessable(
            errors=[FieldError("body.at", "give a time zone (e.g. 2021-06-01T12:00:00Z)")]
        )
    result = await handlers.verify_hc1(
        _issuer(request), request.app[POOL_KEY], body.hc1, datetime.now(UTC), body.at
    )
    return json_response(VerifyResult.of(result))


@api.get(
    "/v1/trust-list",
    responses={200: TrustListView},
    summary="The public keys certificates are verified with",
    tags=["verification"],
)
async def trust_list(request: web.Request) -> web.StreamResponse:
    """Every document signer (DSC) that signed here - the active one and those rotated out,
    which keep verifying what they signed - and the foreign DSCs this service trusts: kid,
    certificate (base64 DER), public key (JWK and SPKI), key usage, validity. Public."""
    issuer = _issuer(request)
    view = trust_list_view(
        await handlers.refresh_trust(issuer, request.app[POOL_KEY]),
        issuer=issuer.config.country,
        active_kid=issuer.signer.kid,
    )
    return json_response(view, headers={"Cache-Control": "public, max-age=300"})


@api.get(
    "/v1/revocations",
    query=Page,
    responses={200: RevocationList, 422: None},
    summary="Revoked certificates, as hashes of their UVCIs",
    tags=["verification"],
)
async def revocation_list(request: web.Request, query: Page) -> web.StreamResponse:
    """Revoked certificates of this issuer, oldest revocation first, `limit` per page
    (`next_cursor` for the next). Each entry: `uvci_sha256` (hex SHA-256 of the UVCI as the
    certificate writes it) and `uci` (the EU DCC revocation list's UCI hash: its first 128
    bits, base64). No UVCI or person appears in clear. Public."""
    limit = page_limit(query)
    after = None
    if query.cursor:
        values = decode_cursor(query.cursor)
        try:
            after = (datetime.fromisoformat(str(values[0])), bytes.fromhex(str(values[1])))
        except (IndexError, ValueError):
            raise Problem.unprocessable(
                errors=[FieldError("query.cursor", "not a cursor this API returned")]
            ) from None
    entries, following = await readmodel.revocations(
        request.app[POOL_KEY], limit=limit, after=after
    )
    page = RevocationList(
        issuer=_issuer(request).config.country,
        hash_types=["SHA256", "UCI"],
        entries=entries,
        next_cursor=encode_cursor(following[0].isoformat(), following[1].hex())
        if following
        else None,
    )
    return json_response(page)


# --- keys -----------------------------------------------------------------------------


@api.post(
    "/v1/signing-keys/rotate",
    responses={201: TrustListEntry, 409: None},
    roles={Role.ADMIN},
    idempotent=True,
    summary="Sign with a new development key",
    tags=["keys"],
)
async def rotate_signing_key(request: web.Request) -> web.StreamResponse:
    """Generate a new document signer (development keys: signed by the local CSCA) and sign
    with it from now on. The previous DSC stays on the trust list, so certificates it signed
    keep verifying. With configured key files (production) this is a 409: configure the new
    DSC files and restart."""
    issuer = _issuer(request)
    new = await handlers.rotate_signing_key(issuer, request.app[POOL_KEY])
    view = trust_list_view(issuer.trust, issuer=issuer.config.country, active_kid=new.kid)
    [entry] = [k for k in view.keys if k.active]
    return json_response(entry, status=201)


@api.post(
    "/v1/signing-keys/revocations",
    body=SigningKeyRevocation,
    responses={200: TrustListEntry, 201: TrustListEntry, 404: None, 409: None},
    roles={Role.ADMIN},
    idempotent=True,
    summary="Revoke a document signer (DSC)",
    tags=["keys"],
)
async def revoke_signing_key(
    request: web.Request, body: SigningKeyRevocation
) -> web.StreamResponse:
    """Revoke a DSC on the trust list (this registry's or a foreign one): from now on nothing
    it signed verifies (`signer_revoked`), and the trust list shows it revoked. Recorded
    as an event. 201 when revoked now, 200 when it already was; 404 for a kid not on the
    trust list; 409 for the DSC signing now (rotate first)."""
    kid = body.kid_bytes()
    if kid is None:
        raise Problem.unprocessable(
            errors=[FieldError("body.kid", "a kid as the trust list writes it (base64, 8 bytes)")]
        )
    issuer = _issuer(request)
    key, revoked = await handlers.revoke_signing_key(
        issuer,
        request.app[STORE_KEY],
        kid,
        body.reason,
        metadata=metadata_from_request(request),
    )
    entry = trust_list_entry(key, active_kid=issuer.signer.kid)
    return json_response(entry, status=201 if revoked else 200)


# --- the service ------------------------------------------------------------------------


def _issuer_resource(dependencies: Provided[Dependencies]) -> Resource:
    async def issuer(app: web.Application) -> AsyncIterator[None]:
        interval = images.render_interval(app[SETTINGS_KEY])
        started = await handlers.start_issuer(
            app[POOL_KEY], app[SETTINGS_KEY], CertificateMetrics(app[METRICS_KEY])
        )
        app[ISSUER_KEY] = started
        store = app[STORE_KEY]
        offering = holderkeys.offer_missing_at_start(store, app[POOL_KEY], CONTEXT)
        try:
            async with contextlib.AsyncExitStack() as running:
                await running.enter_async_context(
                    dependencies.providing(Dependencies(store=store, issuer=started))
                )
                await running.enter_async_context(
                    background_task(offering, shutdown=app[SHUTDOWN_KEY])
                )
                if interval is not None:
                    rendering = images.render_backlog(app[POOL_KEY], started.metrics, interval)
                    await running.enter_async_context(
                        background_task(rendering, shutdown=app[SHUTDOWN_KEY])
                    )
                yield
        finally:
            handlers.stop_issuer(started)

    return issuer


def build_service() -> Service:
    """A fresh certificates Service (its reactions bound to the app it is started in)."""
    dependencies: Provided[Dependencies] = Provided("the certificates service's store and issuer")
    return Service(
        name="certificates",
        api=api,
        publishes=CONTEXT,
        schema_files=[HOLDER_KEYS_SQL, SCHEMA_FILE],
        reactions=handlers.build_reactions(dependencies),
        resources=(_issuer_resource(dependencies),),
        commands=add_commands,
    )


service = build_service()
