"""Access control: SMART v2 scopes on every endpoint, the built-in token endpoint, public discovery."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import httpx
import jwt
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from fhir_bridge import Settings, create_app
from fhir_bridge.cli import main
from fhir_bridge.security.clients import ClientRegistry
from fhir_bridge.store.database import create_engines
from tests.conftest import TEST_PSEUDONYM_KEY, serving
from tests.dicom_samples import multipart, study_set
from tests.security_helpers import SCOPES, ClientKey, headers_for, token_request


def _outcome(response) -> str:  # type: ignore[no-untyped-def]
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    return body["issue"][0]["diagnostics"]


def _patient(client: TestClient, writer: dict) -> str:
    created = client.post(
        "/fhir/Patient",
        json={"resourceType": "Patient", "identifier": [{"system": "urn:test", "value": "p1"}]},
        headers=writer,
    )
    assert created.status_code == 201, created.text
    return created.json()["id"]


def test_requests_without_a_token_get_401_but_metadata_and_catalogue_stay_public(secured: TestClient) -> None:
    refused = secured.get("/fhir/Patient")
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].startswith("Bearer")
    assert "bearer token" in _outcome(refused)
    for path in ("/fhir/ImagingStudy/x", "/fhir/_history", "/fhir/$export", "/dicomweb/studies", "/catalogue/counts"):
        assert secured.get(path).status_code == 401, path
    assert secured.post("/fhir", json={"resourceType": "Bundle", "type": "batch"}).status_code == 401
    metadata = secured.get("/fhir/metadata")
    assert metadata.status_code == 200
    security = metadata.json()["rest"][0]["security"]
    assert security["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"
    assert security["extension"][0]["extension"][0]["valueUri"] == "http://testserver/fhir/auth/token"
    assert secured.get("/catalogue").status_code == 200


def test_smart_configuration_advertises_the_token_endpoint(secured: TestClient) -> None:
    for path in ("/fhir/.well-known/smart-configuration", "/.well-known/smart-configuration"):
        configuration = secured.get(path).json()
        assert configuration["token_endpoint"] == "http://testserver/fhir/auth/token"
        assert "client-confidential-asymmetric" in configuration["capabilities"]
        assert "private_key_jwt" in configuration["token_endpoint_auth_methods_supported"]
        assert {"RS384", "ES384"} <= set(configuration["token_endpoint_auth_signing_alg_values_supported"])
    keys = secured.get("/fhir/auth/jwks").json()["keys"]
    assert keys[0]["kty"] == "EC" and "d" not in keys[0]


def test_read_scope_allows_reads_and_searches_of_its_type_only(
    secured: TestClient, client_keys: dict[str, ClientKey]
) -> None:
    writer = headers_for(secured, client_keys, "writer")
    patient_id = _patient(secured, writer)
    imaging = headers_for(secured, client_keys, "imaging-reader")
    assert secured.get("/fhir/ImagingStudy", headers=imaging).status_code == 200
    refused = secured.get(f"/fhir/Patient/{patient_id}", headers=imaging)
    assert refused.status_code == 403
    assert "system/Patient.r" in _outcome(refused)
    assert refused.json()["issue"][0]["code"] == "forbidden"
    reader = headers_for(secured, client_keys, "reader")
    assert secured.get(f"/fhir/Patient/{patient_id}", headers=reader).status_code == 200
    assert secured.get(f"/fhir/Patient/{patient_id}/_history", headers=reader).status_code == 200


def test_writes_need_write_scopes(secured: TestClient, client_keys: dict[str, ClientKey]) -> None:
    reader = headers_for(secured, client_keys, "reader")
    resource = {"resourceType": "Patient", "identifier": [{"system": "urn:test", "value": "p2"}]}
    refused = secured.post("/fhir/Patient", json=resource, headers=reader)
    assert refused.status_code == 403
    assert "system/Patient.c" in _outcome(refused)
    writer = headers_for(secured, client_keys, "writer")
    patient_id = _patient(secured, writer)
    resource["id"] = patient_id
    assert secured.put(f"/fhir/Patient/{patient_id}", json=resource, headers=reader).status_code == 403
    assert secured.delete(f"/fhir/Patient/{patient_id}", headers=reader).status_code == 403
    assert secured.get(f"/fhir/Patient/{patient_id}", headers=writer).status_code == 200


def test_includes_and_chains_need_scopes_on_the_types_they_reach(
    secured: TestClient, client_keys: dict[str, ClientKey]
) -> None:
    imaging = headers_for(secured, client_keys, "imaging-reader")
    for query in ("_include=ImagingStudy:subject:Patient", "subject:Patient.identifier=urn:test|p1"):
        refused = secured.get(f"/fhir/ImagingStudy?{query}", headers=imaging)
        assert refused.status_code == 403, query
        assert "Patient" in _outcome(refused)
    posted = secured.post(
        "/fhir/ImagingStudy/_search", data={"_revinclude": "DiagnosticReport:imaging-study"}, headers=imaging
    )
    assert posted.status_code == 403
    assert "system/DiagnosticReport.r" in _outcome(posted)
    reader = headers_for(secured, client_keys, "reader")
    assert secured.get("/fhir/ImagingStudy?_include=ImagingStudy:subject:Patient", headers=reader).status_code == 200


def test_a_transaction_with_one_forbidden_entry_is_refused_whole(
    secured: TestClient, client_keys: dict[str, ClientKey]
) -> None:
    token = headers_for(secured, client_keys, "writer", "system/Patient.cruds")
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": {"resourceType": "Patient", "identifier": [{"system": "urn:test", "value": "t1"}]},
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"}},
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }
    refused = secured.post("/fhir", json=bundle, headers=token)
    assert refused.status_code == 403
    assert "system/Observation.c" in _outcome(refused)
    assert not secured.get("/fhir/Patient?identifier=urn:test|t1", headers=token).json().get("entry")


def test_wildcard_scopes_do_not_reach_the_audit_trail(secured: TestClient, client_keys: dict[str, ClientKey]) -> None:
    writer = headers_for(secured, client_keys, "writer")
    refused = secured.get("/fhir/AuditEvent", headers=writer)
    assert refused.status_code == 403
    assert "system/AuditEvent" in _outcome(refused)


def test_dicom_push_needs_write_scopes(secured: TestClient, client_keys: dict[str, ClientKey]) -> None:
    body = multipart([data for _, data in study_set(studies=1, series=1, instances=1)])
    content_type = 'multipart/related; type="application/dicom"; boundary=fhir-bridge-test-boundary'
    reader = headers_for(secured, client_keys, "reader")
    refused = secured.post("/dicomweb/studies", content=body, headers={**reader, "Content-Type": content_type})
    assert refused.status_code == 403
    writer = headers_for(secured, client_keys, "writer")
    stored = secured.post("/dicomweb/studies", content=body, headers={**writer, "Content-Type": content_type})
    assert stored.status_code == 200, stored.text


def test_bulk_export_needs_read_on_every_exported_type(secured: TestClient, client_keys: dict[str, ClientKey]) -> None:
    writer = headers_for(secured, client_keys, "writer")
    body = multipart([data for _, data in study_set(studies=1, series=1, instances=1)])
    stow = 'multipart/related; type="application/dicom"; boundary=fhir-bridge-test-boundary'
    assert secured.post("/dicomweb/studies", content=body, headers={**writer, "Content-Type": stow}).status_code == 200
    imaging = headers_for(secured, client_keys, "imaging-reader")
    prefer = {**imaging, "Prefer": "respond-async"}
    refused = secured.get("/fhir/$export?_type=ImagingStudy,Patient", headers=prefer)
    assert refused.status_code == 403
    assert "system/Patient.r" in _outcome(refused)
    # without _type: the types the token can read (Bulk Data IG), recorded in the job's request
    accepted = secured.get("/fhir/$export", headers=prefer)
    assert accepted.status_code == 202, accepted.text
    status_url = accepted.headers["content-location"]
    assert secured.get(status_url).status_code == 401
    other = headers_for(secured, client_keys, "reader")
    assert secured.get(status_url, headers=other).status_code == 404  # another client's job: not revealed
    assert secured.delete(status_url, headers=other).status_code == 404
    deadline = time.monotonic() + 30
    while (status := secured.get(status_url, headers=imaging)).status_code == 202 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert status.status_code == 200, status.text
    manifest = status.json()
    assert {item["type"] for item in manifest["output"]} == {"ImagingStudy"}  # not the Patient, Endpoint...


def test_catalogue_counts_need_search_scopes(secured: TestClient, client_keys: dict[str, ClientKey]) -> None:
    imaging = headers_for(secured, client_keys, "imaging-reader")
    assert secured.get("/catalogue/counts", headers=imaging).status_code == 403
    reader = headers_for(secured, client_keys, "reader")
    assert secured.get("/catalogue/counts", headers=reader).status_code == 200


def test_token_endpoint_grants_no_more_than_the_registration(
    secured: TestClient, client_keys: dict[str, ClientKey]
) -> None:
    answer = token_request(secured, "reader", client_keys["reader"], "system/*.cruds")
    assert answer.status_code == 200
    assert answer.headers["cache-control"] == "no-store"
    granted = answer.json()
    assert granted["token_type"] == "bearer" and granted["expires_in"] == 300
    assert set(granted["scope"].split()) == {"system/ImagingStudy.rs", "system/Patient.rs"}
    refused = token_request(secured, "imaging-reader", client_keys["imaging-reader"], "system/Patient.rs")
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_scope"


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"audience": "https://elsewhere.example/token"}, "invalid_client"),
        ({"expires_in": -120}, "invalid_client"),
        ({"expires_in": 3600}, "invalid_client"),
    ],
)
def test_token_endpoint_refuses_bad_assertions(
    secured: TestClient, client_keys: dict[str, ClientKey], change: dict, error: str
) -> None:
    answer = token_request(secured, "reader", client_keys["reader"], "system/Patient.rs", **change)
    assert answer.status_code == 401
    assert answer.json()["error"] == error


def test_token_endpoint_refuses_replays_strangers_and_wrong_keys(
    secured: TestClient, client_keys: dict[str, ClientKey]
) -> None:
    first = token_request(secured, "reader", client_keys["reader"], "system/Patient.rs", jti="once")
    assert first.status_code == 200
    replay = token_request(secured, "reader", client_keys["reader"], "system/Patient.rs", jti="once")
    assert replay.status_code == 401 and "used already" in replay.json()["error_description"]
    stranger = token_request(secured, "nobody", client_keys["reader"], "system/Patient.rs")
    assert stranger.status_code == 401 and stranger.json()["error"] == "invalid_client"
    other_key = ClientKey(client_keys["writer"].private, client_keys["reader"].kid, "RS384")
    forged = token_request(secured, "reader", other_key, "system/Patient.rs")
    assert forged.status_code == 401
    wrong_grant = secured.post("/fhir/auth/token", data={"grant_type": "password"})
    assert wrong_grant.status_code == 400 and wrong_grant.json()["error"] == "unsupported_grant_type"


def test_forged_and_expired_access_tokens_get_401(secured: TestClient, client_keys: dict[str, ClientKey]) -> None:
    good = headers_for(secured, client_keys, "reader")["Authorization"].split()[1]
    claims = jwt.decode(good, options={"verify_signature": False})
    forged = jwt.encode({**claims, "scope": "system/*.cruds"}, client_keys["writer"].private, algorithm="RS256")
    for token in (forged, "not-a-jwt", good[:-4] + "AAAA"):
        answer = secured.get("/fhir/Patient", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 401, token
        assert "invalid_token" in answer.headers["www-authenticate"]


def test_clients_cli_registers_lists_and_removes(database_url: str, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    key_file = tmp_path / "client.pem"
    assert main(["clients", "add", "pacs-1", "--scope", "system/ImagingStudy.cruds", "--new-key", str(key_file),
                 "--database-url", database_url]) == 0  # fmt: skip
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert main(["clients", "list", "--database-url", database_url]) == 0
    assert "pacs-1\tsystem/ImagingStudy.cruds" in capsys.readouterr().out
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}))
    assert (
        main(["clients", "add", "x", "--scope", "system/*.rs", "--jwks", str(bad), "--database-url", database_url]) == 2
    )
    assert main(["clients", "add", "y", "--scope", "patient/*.rs", "--jwks-url", "https://x/jwks",
                 "--database-url", database_url]) == 2  # fmt: skip
    assert main(["clients", "remove", "pacs-1", "--database-url", database_url]) == 0
    assert main(["clients", "remove", "pacs-1", "--database-url", database_url]) == 2
    engines = create_engines(database_url)
    assert ClientRegistry(engines).all() == []
    engines.dispose()


def test_a_mounted_app_checks_tokens_on_its_own_routes_only(database_url: str, client_keys: dict) -> None:
    inner = create_app(
        Settings(database_url=database_url, auth="smart", fhir_path="", pseudonym_key=TEST_PSEUDONYM_KEY)
    )
    ClientRegistry(inner.state.services.engines).add(
        "reader", SCOPES["reader"], jwks=client_keys["reader"].jwks(), jwks_url=None
    )
    host = FastAPI()
    host.get("/health")(lambda: {"ok": True})
    host.mount("/fhir", inner)
    with TestClient(host, base_url="http://testserver") as client:
        assert client.get("/health").status_code == 200
        assert client.get("/fhir/Patient").status_code == 401
        assert client.get("/fhir/metadata").status_code == 200
        token = headers_for(client, client_keys, "reader")  # audience: the mounted token URL
        assert client.get("/fhir/Patient", headers=token).status_code == 200
    inner.state.services.close()


def test_the_documented_python_recipe_gets_a_token_and_searches(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    page = (Path(__file__).parent.parent / "docs" / "access-control.md").read_text(encoding="utf-8")
    recipe = re.search(r"```python\n(import time, uuid, httpx, jwt\n.*?)```", page, re.S)
    assert recipe is not None
    registration = re.search(r"fhir-bridge clients add research-app --role (\S+) --new-key research-app.pem", page)
    assert registration is not None
    monkeypatch.chdir(tmp_path)
    main(["clients", "add", "research-app", "--role", registration[1], "--new-key", "research-app.pem",
          "--database-url", database_url])  # fmt: skip
    app = create_app(Settings(database_url=database_url, auth="smart", pseudonym_key=TEST_PSEUDONYM_KEY))
    with serving(app) as port:
        namespace: dict = {}
        exec(recipe[1].replace("127.0.0.1:8080", f"127.0.0.1:{port}"), namespace)  # the recipe, as printed
        answer = httpx.get(
            f"{namespace['base']}/ImagingStudy", headers={"Authorization": f"Bearer {namespace['token']}"}
        )
        assert answer.status_code == 200
        assert httpx.get(f"{namespace['base']}/ImagingStudy").status_code == 401
    app.state.services.close()


def test_access_control_is_on_unless_switched_off_and_off_is_logged(
    database_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("FHIR_BRIDGE_AUTH", raising=False)  # conftest switches it off for other tests
    settings = Settings(database_url=database_url, pseudonym_key=TEST_PSEUDONYM_KEY)
    assert settings.auth == "smart"
    with caplog.at_level("WARNING", logger="fhir_bridge"):
        secured_by_default = create_app(settings)
    assert not [r for r in caplog.records if "access control is OFF" in r.getMessage()]
    with TestClient(secured_by_default) as client:
        assert client.get("/fhir/Patient").status_code == 401
    secured_by_default.state.services.close()
    monkeypatch.setenv("FHIR_BRIDGE_AUTH", "none")
    with caplog.at_level("WARNING", logger="fhir_bridge"):
        open_app = create_app(Settings(database_url=database_url, pseudonym_key=TEST_PSEUDONYM_KEY))
    assert any("access control is OFF" in r.getMessage() for r in caplog.records)
    with TestClient(open_app) as client:
        assert client.get("/fhir/Patient").status_code == 200
        assert "security" not in client.get("/fhir/metadata").json()["rest"][0]
    open_app.state.services.close()


def test_a_system_search_with_type_needs_search_on_those_types_and_sees_only_them(
    secured: TestClient, client_keys: dict[str, ClientKey]
) -> None:
    """The search a client runs is authorised as its search: _type=Patient needs Patient.s, and then
    finds Patients only (it used to be ignored, so a Patient reader saw every type)."""
    writer = headers_for(secured, client_keys, "writer")
    patient_id = _patient(secured, writer)
    observation = {"resourceType": "Observation", "status": "final", "code": {"text": "x"}}
    assert secured.post("/fhir/Observation", json=observation, headers=writer).status_code == 201
    reader = headers_for(secured, client_keys, "reader")
    found = secured.get("/fhir", params={"_type": "Patient"}, headers=reader)
    assert found.status_code == 200
    assert [e["resource"]["id"] for e in found.json()["entry"]] == [patient_id]
    assert secured.get("/fhir", params={"_type": "Observation"}, headers=reader).status_code == 403
    assert secured.head("/fhir", headers=reader).status_code == 403  # HEAD is the search, without a body
    assert secured.head("/fhir", params={"_type": "Patient"}, headers=reader).status_code == 200


def test_operations_need_what_they_read_write_or_search(secured: TestClient, client_keys: dict[str, ClientKey]) -> None:
    """$everything: read of the Patient and search of its compartment (of the _types); $meta: read;
    $meta-add/$meta-delete: update; $validate with a mode: what that write needs."""
    writer = headers_for(secured, client_keys, "writer")
    patient_id = _patient(secured, writer)
    reader = headers_for(secured, client_keys, "reader")
    imaging = headers_for(secured, client_keys, "imaging-reader")
    everything = f"/fhir/Patient/{patient_id}/$everything"
    assert secured.get(everything, headers=reader).status_code == 403  # every type's search: */s
    assert secured.get(everything, params={"_type": "ImagingStudy"}, headers=reader).status_code == 200
    assert secured.get(everything, params={"_type": "ImagingStudy"}, headers=imaging).status_code == 403
    assert secured.get(everything, headers=writer).status_code == 200
    assert secured.get(f"/fhir/Patient/{patient_id}/$meta", headers=reader).status_code == 200
    assert secured.get("/fhir/Patient/$meta", headers=imaging).status_code == 403
    assert secured.get("/fhir/ImagingStudy/$meta", headers=imaging).status_code == 200
    assert secured.get("/fhir/$meta", headers=reader).status_code == 403  # every type: */r
    tag = {"resourceType": "Parameters", "parameter": [{"name": "meta", "valueMeta": {"tag": [{"code": "x"}]}}]}
    refused = secured.post(f"/fhir/Patient/{patient_id}/$meta-add", json=tag, headers=reader)
    assert refused.status_code == 403 and "system/Patient.u" in _outcome(refused)
    assert secured.post(f"/fhir/Patient/{patient_id}/$meta-add", json=tag, headers=writer).status_code == 200
    resource = {"resourceType": "Patient"}
    assert secured.post("/fhir/Patient/$validate", json=resource, headers=reader).status_code == 200
    create_mode = secured.post("/fhir/Patient/$validate?mode=create", json=resource, headers=reader)
    assert create_mode.status_code == 403 and "system/Patient.c" in _outcome(create_mode)
    as_parameters = {
        "resourceType": "Parameters",
        "parameter": [{"name": "resource", "resource": resource}, {"name": "mode", "valueCode": "create"}],
    }
    assert secured.post("/fhir/Patient/$validate", json=as_parameters, headers=reader).status_code == 403
    delete_mode = secured.post(f"/fhir/Patient/{patient_id}/$validate?mode=delete", headers=reader)
    assert delete_mode.status_code == 403
