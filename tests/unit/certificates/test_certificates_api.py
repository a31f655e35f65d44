"""Certificates' HTTP surface: the contract's routes, who may call them, a valid OpenAPI
document, and the events it publishes and reacts to."""

from __future__ import annotations

from openapi_spec_validator import validate

from immunreg.contracts import administration, certificates, inventory, registration
from immunreg.http.auth import Role
from services.certificates.app import api, build_service

OWNERS = {Role.CITIZEN, Role.ADMIN}
PUBLIC = None

ROUTES = {
    ("GET", "/v1/citizens/{citizen_id}/certificates"): OWNERS,
    ("GET", "/v1/certificates/{uvci}"): OWNERS,
    ("GET", "/v1/certificates/{uvci}/qr.png"): OWNERS,
    ("GET", "/v1/certificates/{uvci}/qr.svg"): OWNERS,
    ("GET", "/v1/certificates/{uvci}/print"): OWNERS,
    ("POST", "/v1/verify"): PUBLIC,
    ("GET", "/v1/trust-list"): PUBLIC,
    ("GET", "/v1/revocations"): PUBLIC,
    ("POST", "/v1/signing-keys/rotate"): {Role.ADMIN},
    ("POST", "/v1/signing-keys/revocations"): {Role.ADMIN},
    ("GET", "/v1/audit/reads"): {Role.PUBLIC_HEALTH},
    ("GET", "/v1/citizens/{citizen_id}/reads"): {Role.CITIZEN},
}


def test_every_route_of_the_contract_with_its_roles() -> None:
    declared = {(r.method, r.path): (set(r.roles) if r.roles else None) for r in api.routes}
    assert declared == ROUTES


def test_the_openapi_document_is_valid() -> None:
    document = api.openapi()
    validate(document)
    verify = document["paths"]["/v1/verify"]["post"]
    assert "security" not in verify and "422" in verify["responses"]


def test_the_service_publishes_certificate_events_and_reacts_to_its_sources() -> None:
    service = build_service()
    assert service.name == "certificates"
    assert service.publishes is certificates.CONTEXT
    assert service.reactions is not None
    assert service.reactions.topics == sorted(
        [registration.CONTEXT.topic, administration.CONTEXT.topic, inventory.CONTEXT.topic]
    )
    table = {
        (registration.CONTEXT.topic, "CitizenRegistered"),
        (registration.CONTEXT.topic, "ContactDetailsChanged"),
        (registration.CONTEXT.topic, "PersonalDataKeyGranted"),
        (registration.CONTEXT.topic, "CitizenErased"),
        (administration.CONTEXT.topic, "DoseAdministered"),
        (administration.CONTEXT.topic, "DoseCorrected"),
        (administration.CONTEXT.topic, "DoseVoided"),
        (inventory.CONTEXT.topic, "LotRecalled"),
    }
    for topic, type_name in table:
        assert service.reactions.lookup(topic, type_name) is not None, type_name
    assert service.reactions.lookup(inventory.CONTEXT.topic, "StockLevelChanged") is None
