"""Request limits (issue 7): body sizes per media type (413), a stalled body (408), and what one search may ask.

Body limits are checked on SQLite only (they are in front of the database); the 408 and the early 413 are
checked over real sockets against uvicorn. Search limits run on both databases: at the limit the search is
served, one beyond it is a 400 ``too-costly`` naming the parameter.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from fhir_bridge import Settings, create_app
from fhir_bridge.api.limits import BodyLimits
from fhir_bridge.search.query import MAX_CHAIN_CONDITIONS
from tests.conftest import TEST_PSEUDONYM_KEY, serving
from tests.dicom_samples import Patient, instance, multipart, uid

KIB = 1024
STOW_TYPE = 'multipart/related; type="application/dicom"; boundary="limits-boundary"'


# body sizes and timeouts ---------------------------------------------------------------------------------------
def _small_app(tmp_path: Path, **limits: object) -> FastAPI:
    settings = dict(
        database_url=f"sqlite:///{tmp_path / 'store.db'}",
        pseudonym_key=TEST_PSEUDONYM_KEY,
        pseudonym_key_file=None,
        bulk_workers=0,
        max_body_bytes=4 * KIB,
        max_body_bytes_fhir_json=2 * KIB,
        max_body_bytes_multipart=24 * KIB,
        max_body_bytes_dicom=12 * KIB,
        max_body_bytes_clinical=3 * KIB,
    )
    settings.update(limits)
    return create_app(Settings(**settings))


@pytest.fixture
def small(tmp_path: Path) -> Iterator[TestClient]:
    app = _small_app(tmp_path)
    with TestClient(app) as client:
        yield client
    app.state.services.close()


def _patient_of_size(size: int) -> bytes:
    """A Patient of exactly ``size`` bytes of JSON."""
    empty = json.dumps({"resourceType": "Patient", "name": [{"text": ""}]}).encode()
    return json.dumps({"resourceType": "Patient", "name": [{"text": "x" * (size - len(empty))}]}).encode()


def _stored(client: TestClient, resource_type: str) -> int:
    return client.get(f"/fhir/{resource_type}?_summary=count").json()["total"]


def _dicom(number: int) -> bytes:
    patient = Patient(f"LIMIT-{number}", "Limit^Test", "19700101")
    return instance(
        "MR_small.dcm",
        patient=patient,
        study_uid=uid(7, number),
        series_uid=uid(7, number, 1),
        sop_uid=uid(7, number, 1, 1),
    )


def _assert_too_large(response, limit: int) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == 413, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    assert response.headers["connection"] == "close"
    issue = response.json()["issue"][0]
    assert issue["code"] == "too-long"
    assert f"{limit} bytes" in issue["diagnostics"]


def test_a_fhir_json_body_at_its_limit_is_served_and_one_byte_more_is_413(small: TestClient) -> None:
    headers = {"Content-Type": "application/fhir+json"}
    assert small.post("/fhir/Patient", content=_patient_of_size(2 * KIB), headers=headers).status_code == 201
    _assert_too_large(small.post("/fhir/Patient", content=_patient_of_size(2 * KIB + 1), headers=headers), 2 * KIB)
    assert _stored(small, "Patient") == 1


def test_a_chunked_body_is_counted_while_it_streams(small: TestClient) -> None:
    """No Content-Length: the body is refused at the first chunk beyond the limit, and nothing is stored."""

    def chunks(body: bytes) -> Iterator[bytes]:
        for start in range(0, len(body), 500):
            yield body[start : start + 500]

    fhir = small.post(
        "/fhir/Patient", content=chunks(_patient_of_size(3 * KIB)), headers={"Content-Type": "application/fhir+json"}
    )
    _assert_too_large(fhir, 2 * KIB)
    csv = b"patient_id,sex,birth_date\n" + b"".join(b"P-%05d,female,1970-01-01\n" % n for n in range(200))
    clinical = small.post(
        "/ingest/clinical?mapping=patient-demographics", content=chunks(csv), headers={"Content-Type": "text/csv"}
    )
    _assert_too_large(clinical, 3 * KIB)
    stow = small.post(
        "/dicomweb/studies",
        content=chunks(multipart([_dicom(1), _dicom(2), _dicom(3)], "limits-boundary")),
        headers={"Content-Type": STOW_TYPE},
    )
    _assert_too_large(stow, 24 * KIB)
    assert _stored(small, "Patient") == 0
    assert _stored(small, "ImagingStudy") == 0


def test_each_media_type_has_its_own_limit(small: TestClient) -> None:
    two_instances = multipart([_dicom(1), _dicom(2)], "limits-boundary")
    assert len(two_instances) < 24 * KIB
    stored = small.post("/dicomweb/studies", content=two_instances, headers={"Content-Type": STOW_TYPE})
    assert stored.status_code == 200, stored.text
    single = small.post("/dicomweb/studies", content=_dicom(3), headers={"Content-Type": "application/dicom"})
    assert single.status_code == 200, single.text
    _assert_too_large(
        small.post(
            "/dicomweb/studies", content=_dicom(4) + b"\0" * 4 * KIB, headers={"Content-Type": "application/dicom"}
        ),
        12 * KIB,
    )
    assert _stored(small, "ImagingStudy") == 3
    # the same 3.5 KiB: too large as FHIR JSON (2 KiB) or CSV (3 KiB), served as a type without a limit of its own
    body = b"x" * (3 * KIB + 512)
    for media_type, limit in (("application/fhir+json", 2 * KIB), ("application/json-patch+json", 2 * KIB)):
        _assert_too_large(small.post("/fhir/Patient", content=body, headers={"Content-Type": media_type}), limit)
    _assert_too_large(
        small.post("/ingest/clinical?mapping=patient-demographics", content=body, headers={"Content-Type": "text/csv"}),
        3 * KIB,
    )
    plain = small.post(
        "/ingest/clinical?mapping=patient-demographics", content=body, headers={"Content-Type": "text/plain"}
    )
    assert plain.status_code != 413  # the default limit, 4 KiB


def test_the_fhir_json_limit_defaults_to_max_body_bytes() -> None:
    limits = BodyLimits.from_settings(Settings(max_body_bytes=5000, pseudonym_key=TEST_PSEUDONYM_KEY))
    assert limits.limit_for("application/fhir+json; charset=utf-8") == 5000
    assert limits.limit_for("application/x-www-form-urlencoded") == 5000
    assert limits.limit_for("multipart/related; boundary=x") == 4 * KIB**3
    assert limits.limit_for("application/dicom") == 4 * KIB**3
    assert limits.limit_for("text/csv") == KIB**3
    assert limits.limit_for(None) == 5000


def _exchange(port: int, head: bytes, pieces: list[tuple[float, bytes]] = ()) -> tuple[int, bytes, float]:  # type: ignore[assignment]
    """Send ``head``, then each (pause, bytes); read the answer until the server closes. (status, answer, seconds)."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(head)
        for pause, data in pieces:
            time.sleep(pause)
            connection.sendall(data)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    return int(answer.split(b" ", 2)[1]), answer, time.monotonic() - started


def _outcome(answer: bytes) -> dict:
    return json.loads(answer.split(b"\r\n\r\n", 1)[1])


@pytest.fixture
def served_slowly(tmp_path: Path) -> Iterator[int]:
    app = _small_app(tmp_path, body_timeout_s=1.0)
    with serving(app) as port:
        yield port
    app.state.services.close()


def test_a_client_that_stops_sending_its_body_gets_408(served_slowly: int) -> None:
    head = (
        b"POST /fhir/Patient HTTP/1.1\r\nHost: x\r\nContent-Type: application/fhir+json\r\nContent-Length: 100\r\n\r\n"
    )
    status, answer, seconds = _exchange(served_slowly, head + b'{"resourceType"')
    assert status == 408, answer
    assert _outcome(answer)["issue"][0]["code"] == "timeout"
    assert b"connection: close" in answer.lower()
    assert 0.9 < seconds < 10


def test_a_stalled_stream_to_stow_rs_gets_408_and_nothing_is_stored(served_slowly: int) -> None:
    body = multipart([_dicom(1), _dicom(2)], "limits-boundary")
    head = (
        f"POST /dicomweb/studies HTTP/1.1\r\nHost: x\r\nContent-Type: {STOW_TYPE}\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    first = body[: len(body) // 2]
    status, answer, _ = _exchange(served_slowly, head.encode() + b"%x\r\n%s\r\n" % (len(first), first))
    assert status == 408, answer
    with socket.create_connection(("127.0.0.1", served_slowly)) as connection:
        connection.sendall(b"GET /fhir/ImagingStudy?_summary=count HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    assert _outcome(answer)["total"] == 0


def test_a_slow_but_steady_client_is_served(served_slowly: int) -> None:
    """The timeout is between two pieces of the body, not for all of it."""
    body = _patient_of_size(1000)
    head = b"POST /fhir/Patient HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/fhir+json\r\n"
    head += b"Content-Length: %d\r\n\r\n" % len(body)
    pieces = [(0.3, body[start : start + 160]) for start in range(0, len(body), 160)]  # 7 pieces, 2 s in all
    status, answer, seconds = _exchange(served_slowly, head, pieces)
    assert status == 201, answer
    assert seconds > 1.5  # longer in all than the timeout


def test_a_declared_length_beyond_the_limit_is_refused_before_the_body_is_sent(served_slowly: int) -> None:
    """With ``Expect: 100-continue`` the client learns it at once and sends nothing; no app code runs."""
    head = (
        f"POST /dicomweb/studies HTTP/1.1\r\nHost: x\r\nContent-Type: {STOW_TYPE}\r\n"
        f"Content-Length: {10 * KIB**3}\r\nExpect: 100-continue\r\n\r\n"
    )
    status, answer, seconds = _exchange(served_slowly, head.encode())
    assert status == 413, answer
    assert b"100 Continue" not in answer
    assert seconds < 5


# search limits ---------------------------------------------------------------------------------------------------
@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(
        database_url=database_url,
        pseudonym_key=TEST_PSEUDONYM_KEY,
        pseudonym_key_file=None,
        max_count=5,
        max_include=2,
        max_search_parameters=6,
        max_or_values=4,
    )


def _search(client: TestClient, url: str) -> dict:
    response = client.get(url)
    assert response.status_code == 200, response.text
    return response.json()


def _too_costly(client: TestClient, url: str, expression: str | None = None) -> str:
    response = client.post(
        url.split("?")[0] + "/_search",
        content=url.split("?", 1)[1],
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 400, response.text
    issue = response.json()["issue"][0]
    assert issue["code"] == "too-costly"
    if expression:
        assert issue["expression"] == [expression]
    return issue["diagnostics"]


def test_count_is_capped_at_max_count(client: TestClient) -> None:
    for n in range(7):
        client.put(f"/fhir/Patient/p{n}", json={"resourceType": "Patient", "id": f"p{n}"})
    at_limit = _search(client, "/fhir/Patient?_count=5")
    assert len(at_limit["entry"]) == 5
    beyond = _search(client, "/fhir/Patient?_count=500")
    assert len(beyond["entry"]) == 5
    assert "_count=5" in beyond["link"][0]["url"]  # the self link says what was applied
    assert len(_search(client, "/fhir/Patient/_history?_count=500")["entry"]) == 5


def test_included_resources_are_capped_at_max_include_with_a_warning(client: TestClient) -> None:
    for n in range(3):
        client.put(f"/fhir/Patient/p{n}", json={"resourceType": "Patient", "id": f"p{n}"})
        observation = {"resourceType": "Observation", "id": f"o{n}", "status": "final", "code": {"text": "x"}}
        client.put(f"/fhir/Observation/o{n}", json={**observation, "subject": {"reference": f"Patient/p{n}"}})
    at_limit = _search(client, "/fhir/Observation?_id=o0,o1&_include=Observation:subject")["entry"]
    assert [e["search"]["mode"] for e in at_limit] == ["match", "match", "include", "include"]
    beyond = _search(client, "/fhir/Observation?_include=Observation:subject")["entry"]
    assert [e["search"]["mode"] for e in beyond] == ["match"] * 3 + ["include"] * 2 + ["outcome"]
    assert "than the 2 a page carries" in beyond[-1]["resource"]["issue"][0]["diagnostics"]


def _organisations(client: TestClient) -> None:
    client.put("/fhir/Organization/parent", json={"resourceType": "Organization", "id": "parent", "name": "Acme"})
    client.put(
        "/fhir/Organization/child",
        json={"resourceType": "Organization", "id": "child", "partOf": {"reference": "Organization/parent"}},
    )
    client.put(
        "/fhir/Patient/p",
        json={"resourceType": "Patient", "id": "p", "generalPractitioner": [{"reference": "Organization/child"}]},
    )
    client.put(
        "/fhir/Observation/o",
        json={
            "resourceType": "Observation",
            "id": "o",
            "status": "final",
            "code": {"text": "x"},
            "subject": {"reference": "Patient/p"},
        },
    )


def test_chains_of_max_chain_depth_links_are_served_and_longer_ones_are_400(client: TestClient) -> None:
    _organisations(client)
    three = "subject:Patient.general-practitioner:Organization.partof.name"
    assert [e["resource"]["id"] for e in _search(client, f"/fhir/Observation?{three}=acme")["entry"]] == ["o"]
    four = "subject:Patient.general-practitioner:Organization.partof.partof.name"
    assert "4 links" in _too_costly(client, f"/fhir/Observation?{four}=acme", four)
    strict = client.get(f"/fhir/Observation?{four}=acme", headers={"Prefer": "handling=lenient"})
    assert strict.status_code == 400  # never silently ignored: that would answer another search
    reverse = "_has:Observation:subject:_has:Provenance:target:_has:AuditEvent:entity:_has:Provenance:target:agent"
    assert "4 links" in _too_costly(client, f"/fhir/Patient?{reverse}=x", reverse)


def test_max_chain_depth_is_a_setting(tmp_path: Path) -> None:
    app = create_app(
        Settings(database_url=f"sqlite:///{tmp_path / 's.db'}", pseudonym_key=TEST_PSEUDONYM_KEY, max_chain_depth=1)
    )
    with TestClient(app) as client:
        _organisations(client)
        assert [e["resource"]["id"] for e in _search(client, "/fhir/Observation?subject:Patient._id=p")["entry"]] == [
            "o"
        ]
        assert "2 links" in _too_costly(client, "/fhir/Observation?subject:Patient.general-practitioner.name=x")
    app.state.services.close()


def test_a_chain_over_every_type_its_references_may_name_is_400(client: TestClient) -> None:
    """``Provenance.target`` may point at any type: ``target.subject.name`` expands to about 300 SQL conditions,
    one more link to about 1,500 (and on SQLite that was a 500: parser stack overflow)."""
    chain = "target.subject.subject.name"
    message = _too_costly(client, f"/fhir/Provenance?{chain}=x", chain)
    assert f"more than {MAX_CHAIN_CONDITIONS} conditions" in message and "subject:Patient.name" in message
    assert "more than" in _too_costly(client, "/fhir/Provenance?target.subject.name=a,b", "target.subject.name")
    assert "entry" not in _search(client, "/fhir/Provenance?target.subject.name=x")  # json.html: no empty arrays
    assert "entry" not in _search(
        client, "/fhir/Provenance?target:Observation.subject:Patient.general-practitioner.name=x"
    )


def test_search_parameters_are_limited_to_max_search_parameters(client: TestClient) -> None:
    client.put("/fhir/Patient/p", json={"resourceType": "Patient", "id": "p", "gender": "female"})
    at_limit = urlencode([("gender", "female")] * 5 + [("_count", "3")])
    assert len(_search(client, f"/fhir/Patient?{at_limit}")["entry"]) == 1
    beyond = urlencode([("gender", "female")] * 6 + [("_count", "3")])
    assert "7 parameters" in _too_costly(client, f"/fhir/Patient?{beyond}")
    assert _search(client, f"/fhir/Patient?{at_limit}&_format=json&_pretty=true")["entry"]  # not counted


def test_or_values_are_limited_to_max_or_values(client: TestClient) -> None:
    client.put("/fhir/Patient/p", json={"resourceType": "Patient", "id": "p", "gender": "female"})
    assert len(_search(client, "/fhir/Patient?gender=male,other,unknown,female")["entry"]) == 1
    assert "5 comma-separated values" in _too_costly(
        client, "/fhir/Patient?gender=male,other,unknown,x,female", "gender"
    )
    assert "entry" not in _search(client, "/fhir/Patient?name=a\\,b,c\\,d,e,f\\,g")  # escaped commas separate nothing
    assert "5 comma-separated" in _too_costly(client, "/fhir/Patient?_sort=gender,birthdate,name,_id,-_lastUpdated")
    conditional = client.put("/fhir/Patient?gender=a,b,c,d,e", json={"resourceType": "Patient"})
    assert conditional.status_code == 400 and conditional.json()["issue"][0]["code"] == "too-costly"
