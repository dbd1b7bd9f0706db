"""Issue 12's defects, each as an attacker with a valid but narrow token would find it.

Set-up as in the issue: an admin (``system/*.cruds``) stores two Patients, one female with the MRN
``urn:example:mrn|P-FEMALE`` and one male, and a study of each; ``reader`` holds
``system/ImagingStudy.rs`` and ``writer`` ``system/ImagingStudy.cruds``. Every search the server runs
on a client's behalf (export filters, conditional criteria, conditional references) is authorised as
that client's search (SMART App Launch v2 scopes; FHIR R4 http.html#cond-update, bundle.html#references).
"""

from __future__ import annotations

import base64
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.security_helpers import ClientKey, headers_for

FEMALE_MRN = "urn:example:mrn|P-FEMALE"


def _study(patient_id: str, uid: str) -> dict[str, Any]:
    return {
        "resourceType": "ImagingStudy",
        "status": "available",
        "identifier": [{"system": "urn:dicom:uid", "value": f"urn:oid:{uid}"}],
        "subject": {"reference": f"Patient/{patient_id}"},
    }


@pytest.fixture
def site(secured: TestClient, client_keys: dict[str, ClientKey]) -> dict[str, Any]:
    admin = headers_for(secured, client_keys, "writer")
    female = secured.post(
        "/fhir/Patient",
        json={
            "resourceType": "Patient",
            "gender": "female",
            "identifier": [{"system": "urn:example:mrn", "value": "P-FEMALE"}],
        },
        headers=admin,
    ).json()["id"]
    male = secured.post("/fhir/Patient", json={"resourceType": "Patient", "gender": "male"}, headers=admin).json()["id"]
    for patient_id, uid in ((female, "1.2.3.1"), (male, "1.2.3.2")):
        assert secured.post("/fhir/ImagingStudy", json=_study(patient_id, uid), headers=admin).status_code == 201
    return {
        "admin": admin,
        "reader": headers_for(secured, client_keys, "imaging-reader"),
        "writer": headers_for(secured, client_keys, "writer", "system/ImagingStudy.cruds"),
        "auditor": headers_for(secured, client_keys, "auditor"),
        "female": female,
    }


def _diagnostics(response: Any) -> str:
    return str(response.json()["issue"][0]["diagnostics"])


def _events(client: TestClient, auditor: dict[str, str]) -> list[dict[str, Any]]:
    answer = client.get("/fhir/AuditEvent?_count=200", headers=auditor)
    assert answer.status_code == 200, answer.text
    return [entry["resource"] for entry in answer.json().get("entry", [])]


def _queries(events: list[dict[str, Any]]) -> list[str]:
    return [
        base64.b64decode(entity["query"]).decode()
        for event in events
        for entity in event.get("entity", [])
        if "query" in entity
    ]


def test_a_type_filter_that_chains_into_patient_needs_patient_search(secured: TestClient, site: dict) -> None:
    prefer = {"Prefer": "respond-async"}
    chained = "/fhir/$export?_type=ImagingStudy&_typeFilter=ImagingStudy%3Fsubject%3APatient.gender%3Dfemale"
    refused = secured.get(chained, headers={**site["reader"], **prefer})
    assert refused.status_code == 403
    assert "system/Patient.s" in _diagnostics(refused)
    plain = "/fhir/$export?_type=ImagingStudy&_typeFilter=ImagingStudy%3Fstatus%3Davailable"
    assert secured.get(plain, headers={**site["reader"], **prefer}).status_code == 202
    rest = secured.get("/fhir/ImagingStudy?subject:Patient.gender=female", headers=site["reader"])
    assert rest.status_code == 403  # the same search over REST, refused alike


def test_conditional_update_criteria_that_reach_patient_are_refused(secured: TestClient, site: dict) -> None:
    body = _study(site["female"], "1.2.3.9")
    for gender in ("female", "male"):  # no 200-versus-201 oracle: both are refused
        answer = secured.put(f"/fhir/ImagingStudy?subject:Patient.gender={gender}", json=body, headers=site["writer"])
        assert answer.status_code == 403, answer.text
        assert "system/Patient.s" in _diagnostics(answer)
    allowed = secured.put("/fhir/ImagingStudy?identifier=urn:oid:1.2.3.9", json=body, headers=site["writer"])
    assert allowed.status_code == 201  # criteria on the writer's own type: its scopes allow the search


def test_if_none_exist_criteria_that_reach_patient_are_refused(secured: TestClient, site: dict) -> None:
    headers = {**site["writer"], "If-None-Exist": "subject:Patient.gender=female"}
    answer = secured.post("/fhir/ImagingStudy", json=_study(site["female"], "1.2.3.8"), headers=headers)
    assert answer.status_code == 403
    assert "system/Patient.s" in _diagnostics(answer)


def test_a_conditional_reference_in_a_transaction_needs_search_on_its_type(secured: TestClient, site: dict) -> None:
    for identifier in (FEMALE_MRN, "urn:example:mrn|UNKNOWN"):  # no 200-versus-404 oracle
        study = _study("x", "1.2.3.7")
        study["subject"] = {"reference": f"Patient?identifier={identifier}"}
        bundle = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [{"resource": study, "request": {"method": "POST", "url": "ImagingStudy"}}],
        }
        answer = secured.post("/fhir", json=bundle, headers=site["writer"])
        assert answer.status_code == 403, answer.text
        assert "system/Patient.s" in _diagnostics(answer)


def test_the_bulk_manifest_says_its_files_need_the_token(secured: TestClient, site: dict) -> None:
    kick_off = secured.get("/fhir/$export?_type=ImagingStudy", headers={**site["reader"], "Prefer": "respond-async"})
    assert kick_off.status_code == 202, kick_off.text
    status_url = kick_off.headers["content-location"].removeprefix("http://testserver")
    deadline = time.monotonic() + 30
    while (status := secured.get(status_url, headers=site["reader"])).status_code == 202:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    manifest = status.json()
    assert manifest["requiresAccessToken"] is True
    file_url = manifest["output"][0]["url"].removeprefix("http://testserver")
    assert secured.get(file_url).status_code == 401  # as the manifest says
    assert secured.get(file_url, headers=site["reader"]).status_code == 200


@pytest.mark.parametrize(
    "parameter",
    [
        "patient:identifier",
        "subject:Patient.identifier",
        "_has:Observation:patient:identifier",
        "subject:identifier",
    ],
)
def test_personal_values_in_chained_and_modified_parameters_are_hashed_in_the_trail(
    secured: TestClient, site: dict, parameter: str
) -> None:
    value = "urn:fhir-bridge:patient-id|SECRET-MRN-4711"
    secured.get(f"/fhir/ImagingStudy?{parameter}={value}", headers=site["admin"])
    queries = _queries(_events(secured, site["auditor"]))
    assert not any("SECRET-MRN-4711" in query for query in queries)
    assert any(query.startswith(f"{parameter.replace(':', '%3A')}=hmac%3A") for query in queries), queries


def test_a_posted_search_and_if_none_exist_criteria_are_in_the_trail(secured: TestClient, site: dict) -> None:
    searched = secured.post(
        "/fhir/ImagingStudy/_search", data={"status": "available", "_count": "5"}, headers=site["reader"]
    )
    assert searched.status_code == 200
    created = secured.post(
        "/fhir/ImagingStudy",
        json=_study(site["female"], "1.2.3.6"),
        headers={**site["admin"], "If-None-Exist": "identifier=urn:oid:1.2.3.6"},
    )
    assert created.status_code == 201
    queries = _queries(_events(secured, site["auditor"]))
    assert "status=available&_count=5" in queries
    assert any(query.startswith("identifier=hmac%3A") for query in queries), queries  # hashed: identifiers are personal


def test_a_refusal_made_inside_a_route_is_recorded_with_its_reason(secured: TestClient, site: dict) -> None:
    chained = "/fhir/$export?_type=ImagingStudy&_typeFilter=ImagingStudy%3Fsubject%3APatient.gender%3Dfemale"
    secured.get(chained, headers={**site["reader"], "Prefer": "respond-async"})
    refused = [e for e in _events(secured, site["auditor"]) if e["outcome"] != "0"]
    assert "lacks the scopes system/Patient.s" in refused[-1]["outcomeDesc"]


def test_a_route_refusal_that_quotes_the_request_keeps_no_personal_value(secured: TestClient, site: dict) -> None:
    study = _study("x", "1.2.3.5")
    study["subject"] = {"reference": "Patient?identifier=urn:example:mrn|NOBODY-0815"}
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": study, "request": {"method": "POST", "url": "ImagingStudy"}}],
    }
    answer = secured.post("/fhir", json=bundle, headers=site["admin"])
    assert answer.status_code == 404 and "NOBODY-0815" in _diagnostics(answer)  # the client is told
    descriptions = [e["outcomeDesc"] for e in _events(secured, site["auditor"]) if e["outcome"] != "0"]
    assert "conditional reference" in descriptions[-1]
    assert not any("NOBODY-0815" in text for text in descriptions)  # the trail is not


def test_the_token_endpoint_refuses_a_large_body_before_reading_it(secured: TestClient) -> None:
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    large = secured.post("/fhir/auth/token", content=b"a=" + b"x" * (48 * 1024), headers=form)
    assert large.status_code == 413
    assert large.json()["issue"][0]["code"] == "too-long"

    def chunks() -> Any:
        for _ in range(48):
            yield b"x" * 1024

    streamed = secured.post("/fhir/auth/token", content=chunks(), headers=form)  # no Content-Length
    assert streamed.status_code == 413


# Defect 3: the audience and every URL of tokens and discovery come from configuration -----------------


@pytest.fixture
def external_site(database_url: str) -> Any:
    from fhir_bridge import Settings, create_app
    from tests.conftest import TEST_PSEUDONYM_KEY
    from tests.test_external_issuer import IdentityProvider

    provider = IdentityProvider()
    settings = Settings(
        database_url=database_url, auth="smart", auth_issuer=provider.issuer, pseudonym_key=TEST_PSEUDONYM_KEY
    )
    app = create_app(settings)
    with TestClient(app, base_url="http://testserver") as test_client:
        yield test_client, provider
    app.state.services.close()
    provider.stop()


def test_a_token_for_another_server_is_refused_whatever_host_the_request_names(external_site: Any) -> None:
    client, provider = external_site
    other = provider.token(aud="http://another-server/fhir")
    spoofed = {"Authorization": f"Bearer {other}", "Host": "another-server"}
    assert client.get("/fhir/ImagingStudy", headers=spoofed).status_code == 401
    ours = {"Authorization": f"Bearer {provider.token()}", "Host": "another-server"}
    assert client.get("/fhir/ImagingStudy", headers=ours).status_code == 200  # its audience is this server's


def test_a_client_assertion_for_another_token_endpoint_is_refused_whatever_the_host(
    secured: TestClient, client_keys: dict[str, ClientKey]
) -> None:
    from fhir_bridge.security.clients import ASSERTION_TYPE
    from tests.security_helpers import assertion

    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion(
            "reader", client_keys["reader"], audience="http://another-server/fhir/auth/token"
        ),
        "scope": "system/Patient.rs",
    }
    answer = secured.post("/fhir/auth/token", data=form, headers={"Host": "another-server"})
    assert answer.status_code == 401 and answer.json()["error"] == "invalid_client"
    discovery = secured.get("/fhir/.well-known/smart-configuration", headers={"Host": "another-server"}).json()
    assert discovery["token_endpoint"] == "http://testserver/fhir/auth/token"


def test_access_control_beyond_loopback_needs_the_public_base_url(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from fhir_bridge import Settings, create_app
    from fhir_bridge.cli import main
    from fhir_bridge.errors import ConfigurationError
    from tests.conftest import TEST_PSEUDONYM_KEY

    exposed = Settings(database_url=database_url, auth="smart", host="0.0.0.0", pseudonym_key=TEST_PSEUDONYM_KEY)
    with pytest.raises(ConfigurationError, match="FHIR_BRIDGE_PUBLIC_BASE_URL"):
        create_app(exposed)
    capsys.readouterr()
    assert main(["serve", "--host", "0.0.0.0", "--auth", "smart", "--database-url", database_url]) == 2
    refusal = capsys.readouterr().err.strip()
    assert "\n" not in refusal and "FHIR_BRIDGE_PUBLIC_BASE_URL" in refusal  # one line, naming the setting
    public = "https://fhir.hospital.example/fhir"
    app = create_app(exposed.model_copy(update={"public_base_url": public}))
    with TestClient(app, base_url="http://testserver") as client:
        discovery = client.get("/fhir/.well-known/smart-configuration", headers={"Host": "evil.example"}).json()
    app.state.services.close()
    assert discovery["token_endpoint"] == f"{public}/auth/token"
    assert discovery["jwks_uri"] == f"{public}/auth/jwks"


# Defect 5: export jobs are owned by issuer and client together ----------------------------------------


def test_an_external_token_with_a_builtin_client_id_cannot_see_that_clients_export(
    external_site: Any, client_keys: dict[str, ClientKey]
) -> None:
    from fhir_bridge.security.clients import ClientRegistry
    from tests.security_helpers import SCOPES

    client, provider = external_site
    registry = ClientRegistry(client.app.state.services.engines)
    registry.add("reader", SCOPES["reader"], jwks=client_keys["reader"].jwks(), jwks_url=None)
    builtin = headers_for(client, client_keys, "reader")
    kick_off = client.get("/fhir/$export?_type=ImagingStudy", headers={**builtin, "Prefer": "respond-async"})
    assert kick_off.status_code == 202, kick_off.text
    status_url = kick_off.headers["content-location"].removeprefix("http://testserver")
    impostor = provider.token(client_id="reader", scope=SCOPES["reader"])
    assert client.get(status_url, headers={"Authorization": f"Bearer {impostor}"}).status_code == 404
    assert client.delete(status_url, headers={"Authorization": f"Bearer {impostor}"}).status_code == 404
    assert client.get(status_url, headers=builtin).status_code in (200, 202)


def test_an_export_started_without_access_control_is_not_visible_once_it_is_on(
    database_url: str, client_keys: dict[str, ClientKey]
) -> None:
    from fhir_bridge import Settings, create_app
    from fhir_bridge.security.clients import ClientRegistry
    from tests.conftest import TEST_PSEUDONYM_KEY
    from tests.security_helpers import SCOPES

    open_app = create_app(Settings(database_url=database_url, auth="none", pseudonym_key=TEST_PSEUDONYM_KEY))
    with TestClient(open_app, base_url="http://testserver") as client:
        kick_off = client.get("/fhir/$export?_type=ImagingStudy", headers={"Prefer": "respond-async"})
        assert kick_off.status_code == 202
        status_url = kick_off.headers["content-location"].removeprefix("http://testserver")
        assert client.get(status_url).status_code in (200, 202)  # visible while nobody is checked
    open_app.state.services.close()
    secured_app = create_app(Settings(database_url=database_url, auth="smart", pseudonym_key=TEST_PSEUDONYM_KEY))
    ClientRegistry(secured_app.state.services.engines).add(
        "writer", SCOPES["writer"], jwks=client_keys["writer"].jwks(), jwks_url=None
    )
    with TestClient(secured_app, base_url="http://testserver") as client:
        admin = headers_for(client, client_keys, "writer")
        assert client.get(status_url, headers=admin).status_code == 404
        assert (
            client.get(f"{status_url.replace('$export-status', '$export-file')}/1.ndjson", headers=admin).status_code
            == 404
        )
    secured_app.state.services.close()
