"""STOW-RS over real HTTP, on SQLite and PostgreSQL: clients, framing variants, bad parts, concurrent senders."""

from __future__ import annotations

import contextlib
import io
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pydicom
import pytest
import uvicorn
from dicomweb_client.api import DICOMwebClient

from fhir_bridge import Settings, create_app
from tests.conftest import TEST_PSEUDONYM_KEY, free_port
from tests.dicom_samples import Patient, instance, multipart, uid

WADO = "https://pacs.hospital.example/dicom-web"
CONTENT_TYPE = 'multipart/related; type="application/dicom"; boundary="{}"'


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, pseudonym_key=TEST_PSEUDONYM_KEY, wado_rs_base_url=WADO)


@pytest.fixture
def dicomweb(live_server: str) -> str:
    return live_server.removesuffix("/fhir") + "/dicomweb"


def _study(number: int, series: int = 2, per_series: int = 3, base: str = "MR_small.dcm") -> list[bytes]:
    patient = Patient(f"STOW-{number}", f"Sender^Patient{number}", "19580101", "M")
    return [
        instance(
            base,
            patient=patient,
            study_uid=uid(100, number),
            series_uid=uid(100, number, s),
            sop_uid=uid(100, number, s, i),
            series_number=s,
            instance_number=i,
        )
        for s in range(1, series + 1)
        for i in range(1, per_series + 1)
    ]


@pytest.fixture(scope="module")
def big_study() -> list[bytes]:
    """500 instances of one study: 5 series of 100 (made once, shared by both databases)."""
    return _study(900, series=5, per_series=100)


def _post(url: str, body: bytes | Iterator[bytes], content_type: str) -> httpx.Response:
    return httpx.post(url, content=body, headers={"Content-Type": content_type}, timeout=120)


def _items(response: httpx.Response) -> tuple[list[dict], list[dict]]:
    body = response.json()
    return body.get("00081199", {}).get("Value", []), body.get("00081198", {}).get("Value", [])


def _imaging_study(fhir: str, study_uid: str) -> dict:
    bundle = httpx.get(f"{fhir}/ImagingStudy", params={"identifier": f"urn:dicom:uid|urn:oid:{study_uid}"}).json()
    assert len(bundle.get("entry", [])) == 1, bundle
    return bundle["entry"][0]["resource"]


def _all_instance_uids(study: dict) -> list[str]:
    return [i["uid"] for s in study["series"] for i in s["instance"]]


def test_dicomweb_client_stores_a_study(live_server, dicomweb):
    parts = _study(1)
    client = DICOMwebClient(url=dicomweb)
    response = client.store_instances([pydicom.dcmread(io.BytesIO(p)) for p in parts])
    assert len(response.ReferencedSOPSequence) == len(parts)
    assert "FailedSOPSequence" not in response
    study = _imaging_study(live_server, uid(100, 1))
    assert study["numberOfSeries"] == 2 and study["numberOfInstances"] == 6
    assert sorted(_all_instance_uids(study)) == sorted(uid(100, 1, s, i) for s in (1, 2) for i in (1, 2, 3))
    assert study["meta"]["security"][0]["code"] == "PSEUDED"
    patient = httpx.get(f"{live_server}/{study['subject']['reference']}").json()
    assert patient["birthDate"] == "1958" and patient["gender"] == "male"
    endpoint = httpx.get(f"{live_server}/{study['endpoint'][0]['reference']}").json()
    assert endpoint["address"] == WADO
    provenance = httpx.get(f"{live_server}/Provenance", params={"target": f"ImagingStudy/{study['id']}"}).json()
    assert provenance["entry"][0]["resource"]["agent"][0]["who"]["display"].startswith("STOW-RS sender")
    # the study-level URL, as dicomweb-client sends it
    more = _study(2)
    response = client.store_instances([pydicom.dcmread(io.BytesIO(p)) for p in more], study_instance_uid=uid(100, 2))
    assert len(response.ReferencedSOPSequence) == len(more)


def test_a_single_application_dicom_body(live_server, dicomweb):
    response = _post(f"{dicomweb}/studies", _study(3, 1, 1)[0], "application/dicom")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/dicom+json"
    referenced, failed = _items(response)
    assert len(referenced) == 1 and not failed
    assert _imaging_study(live_server, uid(100, 3))["numberOfInstances"] == 1


def test_a_chunked_body_without_content_length(live_server, dicomweb):
    parts = _study(4, 2, 5)
    body = multipart(parts, "chunky")
    sent: dict[str, str] = {}

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 997):  # delimiters fall across chunk edges
            yield body[start : start + 997]

    def remember(request: httpx.Request) -> None:
        sent.update(request.headers)

    with httpx.Client(event_hooks={"request": [remember]}, timeout=60) as http:
        response = http.post(
            f"{dicomweb}/studies", content=chunks(), headers={"Content-Type": CONTENT_TYPE.format("chunky")}
        )
    assert sent.get("transfer-encoding") == "chunked" and "content-length" not in sent
    assert response.status_code == 200
    assert len(_items(response)[0]) == 10
    assert _imaging_study(live_server, uid(100, 4))["numberOfInstances"] == 10


@pytest.mark.parametrize(
    "content_type",
    [
        'multipart/related; type="application/dicom"; boundary="quoted-boundary"',
        "multipart/related; type=application/dicom; boundary=quoted-boundary",
        "multipart/related; boundary=quoted-boundary",
    ],
    ids=["quoted", "unquoted", "no-type"],
)
@pytest.mark.parametrize("lengths", [False, True], ids=["no-part-lengths", "part-lengths"])
def test_boundary_and_part_header_variants(dicomweb, content_type, lengths):
    parts = _study(5, 1, 2)
    response = _post(f"{dicomweb}/studies", multipart(parts, "quoted-boundary", content_length=lengths), content_type)
    assert response.status_code == 200
    assert len(_items(response)[0]) == 2


def test_a_bad_part_among_good_ones(live_server, dicomweb):
    good = _study(6, 1, 3)
    missing_uid = pydicom.dcmread(io.BytesIO(good[0]))
    del missing_uid.SOPInstanceUID
    buffer = io.BytesIO()
    missing_uid.save_as(buffer)
    parts = [good[0], b"this is not DICOM", good[1], good[2][:-200], buffer.getvalue()]
    response = _post(f"{dicomweb}/studies", multipart(parts), CONTENT_TYPE.format("fhir-bridge-test-boundary"))
    assert response.status_code == 202
    referenced, failed = _items(response)
    assert len(referenced) + len(failed) == len(parts)
    assert [r["00081155"]["Value"][0] for r in referenced] == [uid(100, 6, 1, 1), uid(100, 6, 1, 2)]
    assert [f["00081197"]["Value"][0] for f in failed] == [0xC000, 0xC000, 0xA900]
    assert "not a DICOM file" in failed[0]["00000902"]["Value"][0]
    assert failed[1]["00081155"]["Value"] == [uid(100, 6, 1, 3)]  # truncated, but its UIDs were readable
    assert failed[0]["00081155"] == {"vr": "UI"}  # not DICOM: no instance to name
    assert "missing SOPInstanceUID" in failed[2]["00000902"]["Value"][0]
    study = _imaging_study(live_server, uid(100, 6))
    assert study["numberOfInstances"] == 2


def test_nothing_stored_answers_409_with_every_part(dicomweb):
    response = _post(f"{dicomweb}/studies", multipart([b"junk", b""]), CONTENT_TYPE.format("fhir-bridge-test-boundary"))
    assert response.status_code == 409
    referenced, failed = _items(response)
    assert not referenced and len(failed) == 2


def test_an_instance_of_another_study_than_the_url_names_fails(dicomweb):
    response = _post(f"{dicomweb}/studies/{uid(1, 2, 3)}", _study(7, 1, 1)[0], "application/dicom")
    assert response.status_code == 409
    assert _items(response)[1][0]["00081197"]["Value"] == [0xA900]


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"", "application/dicom", 400),
        (b"", CONTENT_TYPE.format("b"), 400),
        (b"--b--\r\n", CONTENT_TYPE.format("b"), 400),
        (b"whatever", "multipart/related; type=application/dicom", 400),
        (b"whatever", "text/plain", 415),
        (b"whatever", 'multipart/related; type="application/dicom+json"; boundary=b', 415),
    ],
    ids=["empty-single", "empty-multipart", "no-parts", "no-boundary", "text", "metadata-type"],
)
def test_malformed_requests_are_client_errors(dicomweb, body, content_type, status):
    response = _post(f"{dicomweb}/studies", body, content_type)
    assert response.status_code == status
    assert response.json()["resourceType"] == "OperationOutcome"


def test_a_repush_creates_no_new_version(live_server, dicomweb):
    parts = _study(8)
    for _ in range(2):
        response = _post(f"{dicomweb}/studies", multipart(parts), CONTENT_TYPE.format("fhir-bridge-test-boundary"))
        assert response.status_code == 200
    study = _imaging_study(live_server, uid(100, 8))
    assert study["meta"]["versionId"] == "1"
    for reference in (study["subject"]["reference"], study["endpoint"][0]["reference"]):
        assert httpx.get(f"{live_server}/{reference}").json()["meta"]["versionId"] == "1"
    assert len(httpx.get(f"{live_server}/ImagingStudy/{study['id']}/_history").json()["entry"]) == 1


def test_instances_in_any_order_and_any_number_of_requests_give_one_study(live_server, dicomweb):
    parts = _study(10, series=3, per_series=4)
    for chunk in (parts[7:], parts[:3], parts[2:9]):  # overlapping, out of order
        assert _post(
            f"{dicomweb}/studies", multipart(chunk), CONTENT_TYPE.format("fhir-bridge-test-boundary")
        ).is_success
    study = _imaging_study(live_server, uid(100, 10))
    assert study["numberOfInstances"] == 12 and study["numberOfSeries"] == 3
    assert [s["numberOfInstances"] for s in study["series"]] == [4, 4, 4]
    assert [s["number"] for s in study["series"]] == [1, 2, 3]
    assert [i["number"] for i in study["series"][0]["instance"]] == [1, 2, 3, 4]


@contextlib.contextmanager
def _second_server(settings: Settings) -> Iterator[str]:
    """Another app (its own engines and connection pool) on the same database: a second worker."""
    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{server.config.port}/dicomweb"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        app.state.services.close()


@pytest.mark.slow
def test_eight_concurrent_senders_of_overlapping_halves(settings, live_server, dicomweb, big_study):
    """8 senders, each pushing an overlapping half of a 500-instance study in requests of 25, at once."""
    total = len(big_study)
    halves = [[p for n, p in enumerate(big_study) if (n + sender * 63) % total < total // 2] for sender in range(8)]
    assert {id(p) for half in halves for p in half} == {id(p) for p in big_study}
    with _second_server(settings) as other:
        roots = [dicomweb, other]

        def send(sender: int) -> int:
            stored = 0
            half = halves[sender]
            for start in range(0, len(half), 25):
                body = multipart(half[start : start + 25], f"sender-{sender}")
                response = _post(f"{roots[sender % 2]}/studies", body, CONTENT_TYPE.format(f"sender-{sender}"))
                assert response.status_code == 200, response.text
                stored += len(_items(response)[0])
            return stored

        with ThreadPoolExecutor(8) as senders:
            assert sum(senders.map(send, range(8))) == 8 * (total // 2)
    study = _imaging_study(live_server, uid(100, 900))
    uids = _all_instance_uids(study)
    assert len(uids) == len(set(uids)) == total
    assert set(uids) == {uid(100, 900, s, i) for s in range(1, 6) for i in range(1, 101)}
    assert study["numberOfInstances"] == total and study["numberOfSeries"] == 5
    assert [s["numberOfInstances"] for s in study["series"]] == [100] * 5
