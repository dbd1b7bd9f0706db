"""The data steward's web UI (/ui) through the real app, on SQLite and PostgreSQL.

The pages' content with access control off (loopback trials), and the login of the SMART App
Launch standalone flow against a real OpenID Connect provider on loopback (tests/oidc_provider.py):
authorization code + PKCE, the user's token in the session, every page read as that user's search.
The browser's view of the same pages is in tests/test_ui_browser.py.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from rdflib import Graph, URIRef
from sqlalchemy import create_engine, text

from fhir_bridge import Settings, create_app
from fhir_bridge.ui.session import SESSION_COOKIE
from tests.conftest import TEST_PSEUDONYM_KEY
from tests.dicom_samples import multipart, study_set
from tests.oidc_provider import UI_CLIENT, OpenIdProvider, User, running_provider
from tests.ui_data import IDENTIFYING, STOW_TYPE, load

PAGES = ("/ui/ingest", "/ui/patients", "/ui/catalogue", "/ui/audit")


def _settings(database_url: str, **changes: object) -> Settings:
    return Settings(database_url=database_url, pseudonym_key=TEST_PSEUDONYM_KEY, catalogue_min_count=3, **changes)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def ui(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """The app with access control off, the UI's test data loaded once per backend (tests/ui_data.py)."""
    folder = tmp_path_factory.mktemp("ui")
    schema = None
    if request.param == "sqlite":
        url = f"sqlite:///{folder / 'store.db'}"
    else:
        server = request.getfixturevalue("postgres_server")
        schema = f"t_{uuid.uuid4().hex[:12]}"
        _admin(server, f"CREATE SCHEMA {schema}")
        url = f"{server}{'&' if '?' in server else '?'}options=-csearch_path%3D{schema}"
    app = create_app(_settings(url, auth="none"))
    with TestClient(app, base_url="http://testserver") as client:
        load(client, app.state.services, folder / "files")
        yield client
    app.state.services.close()
    if schema:
        _admin(server, f"DROP SCHEMA {schema} CASCADE")


def _admin(server: str, statement: str) -> None:
    engine = create_engine(server)
    with engine.begin() as connection:
        connection.execute(text(statement))
    engine.dispose()


def _links(html: str, kind: str) -> list[str]:
    return list(dict.fromkeys(re.findall(rf'/ui/{kind}/([0-9a-f-]+)"', html)))


def test_pages_show_what_was_pushed_by_path_and_never_an_identifier(ui: TestClient) -> None:
    pages = {path: ui.get(path) for path in PAGES}
    for path, page in pages.items():
        assert page.status_code == 200, path
        assert page.headers["content-type"].startswith("text/html")
        assert page.headers["cache-control"] == "no-store"
    ingest = pages["/ui/ingest"].text
    for shown in ("test-pacs/1.0", "12 instances of 3 studies", "fhir-bridge ingest on", "calling AE title MODALITY1"):
        assert shown in ingest, shown
    for path in ("STOW-RS", "folder", "DIMSE", "clinical"):
        assert f'<span class="tag">{path}</span>' in ingest, path
    assert "1 of 13 instances failed (C000: not a DICOM file)" in ingest  # the failure and its reason
    assert "records 1-3 through the mapping cancer-diagnosis" in ingest
    assert "1 of 3 records failed (row 3: icd10: &#39;hmac:" in ingest  # why, the values sent keyed-hashed
    assert "diagnosis_date: &#39;hmac:" in ingest and "31/31/2024" not in ingest
    assert ingest.count("<svg") == 1 and "2024-02: 2" in ingest  # studies over time, by acquisition month
    folder = ui.get("/ui/ingest", params={"path": "folder"}).text
    assert "fhir-bridge ingest on" in folder and "test-pacs/1.0" not in folder
    assert "not a DICOM file" not in folder  # the STOW-RS failure is filtered out too
    assert "released: 4 instances stored" not in ingest  # a DIMSE association without failures is no problem
    assert "association from AE title STRANGER at 127.0.0.1 rejected: calling AE title not recognised" in ingest
    assert '<td data-label="Status">refused</td>' in ingest

    patients = _links(pages["/ui/patients"].text, "patients")
    assert len(patients) == 6
    everything = "".join(page.text for page in pages.values())
    for patient in patients:
        everything += (shown := ui.get(f"/ui/patients/{patient}")).text
        for study in _links(shown.text, "studies"):
            everything += ui.get(f"/ui/studies/{study}").text
    assert "Invasive ductal carcinoma, upper outer quadrant" in everything  # a Condition of the clinical push
    assert "Irregular mass in the left breast" in everything  # a report's conclusion
    assert "nnU-Net" in everything and "23.5 mm" in everything  # the SEG's segment and the SR's measurement
    assert "ai-node/2.1" in everything  # the study page's Provenance
    for identifying in IDENTIFYING:
        assert identifying not in everything, identifying
    unknown = ui.get("/ui/studies/no-such-study")
    assert unknown.status_code == 404 and "ImagingStudy/no-such-study is not known" in unknown.text


def test_the_catalogue_page_shows_what_harvesters_see_and_what_was_withheld(ui: TestClient) -> None:
    page = ui.get("/ui/catalogue").text.replace("\n", "")
    counts = re.search(r'<dl class="facts counts">(.*?)</dl>', page)
    assert counts is not None
    assert re.search(r"numberOfUniqueIndividuals\)</dt><dd[^>]*>6<", counts.group(1))
    assert re.search(r"nbrOfSegmentations\)</dt><dd[^>]*>&lt; 3<", counts.group(1))  # 1 subject: withheld
    assert "fhir-bridge imaging dataset" in page and "NON_PUBLIC" in page and "2024-01 to 2024-05" in page
    for chart in ("Modality (subjects)", "Body part (subjects)", "Sex (subjects)", "Age at first study (subjects)"):
        assert chart in page
    assert '<td>SEG</td><td class="num withheld">&lt; 3</td>' in page  # withheld, and shown as withheld
    assert '<td>Breast</td><td class="num">3</td>' in page and '<td>Prostate</td><td class="num withheld">' in page
    # what the page shows as published is what the harvesters' description holds, value for value
    graph = Graph().parse(data=ui.get("/catalogue", headers={"Accept": "text/turtle"}).text, format="turtle")
    described = {str(p).rsplit("#", 1)[-1] for p in graph.predicates()}
    assert {"numberOfUniqueIndividuals", "numberOfRecords"} <= described and "nbrOfSegmentations" not in described
    for dimension, values in {"hasImageModality": 2, "hasImageBodyPart": 2, "hasBirthSex": 1}.items():
        listed = list(graph.objects(None, URIRef(f"https://hyperontology.eucaim.cancerimage.eu/#{dimension}")))
        assert len(listed) == values, dimension
    shown = re.search(r"<h3>Modality <small>eucaim:hasImageModality</small></h3>(.*?)</table>", page)
    assert shown is not None and re.findall(r'<td class="num">\d+</td>', shown.group(1)) == [
        '<td class="num">6</td>',
        '<td class="num">5</td>',
    ]


def test_every_read_of_a_page_is_in_the_audit_trail(ui: TestClient) -> None:
    patient = _links(ui.get("/ui/patients").text, "patients")[0]
    ui.get(f"/ui/patients/{patient}")
    trail = ui.get("/fhir/AuditEvent", params={"entity": f"Patient/{patient}"}).json()
    described = [e["entity"][-1]["description"] for e in (x["resource"] for x in trail["entry"])]
    assert f"GET /ui/patients/{patient}" in described
    page = ui.get("/ui/audit", params={"entity-type": "ImagingStudy", "action": "E"}).text
    assert f"/ui/patients/{patient}" in page  # the page's study search, filtered by type and action
    assert "subject=Patient" in page


# login: SMART App Launch standalone, OpenID Connect authorization code with PKCE ----------------------
@pytest.fixture
def provider() -> Iterator[OpenIdProvider]:
    with running_provider(("http://testserver/ui/callback",)) as running:
        yield running


@pytest.fixture
def secured(database_url: str, provider: OpenIdProvider) -> Iterator[TestClient]:
    """One stored study; the app with access control on, trusting the provider, its UI registered there."""
    loader = create_app(_settings(database_url, auth="none"))
    with TestClient(loader) as client:
        parts = [data for _, data in study_set(studies=1, series=1, instances=1)]
        assert client.post(
            "/dicomweb/studies", content=multipart(parts), headers={"Content-Type": STOW_TYPE}
        ).is_success
    loader.state.services.close()
    app = create_app(_settings(database_url, auth="smart", auth_issuer=provider.issuer, ui_client_id=UI_CLIENT))
    with TestClient(app, base_url="http://testserver") as client:
        yield client
    app.state.services.close()


def _log_in(client: TestClient, page: str) -> httpx.Response:
    """The browser's way through the login, the provider's page answered over real HTTP."""
    answer = client.get(page, follow_redirects=False)
    assert answer.status_code == 303
    login = answer.headers["location"]
    assert login.startswith("http://testserver/ui/login?next=")
    answer = client.get(login, follow_redirects=False)
    assert answer.status_code == 303
    authorize = answer.headers["location"]
    query = parse_qs(urlsplit(authorize).query)
    assert query["code_challenge_method"] == ["S256"] and query["aud"] == ["http://testserver/fhir"]
    assert query["response_type"] == ["code"] and query["client_id"] == [UI_CLIENT]
    back = httpx.get(authorize, follow_redirects=False)
    assert back.status_code == 302
    return client.get(back.headers["location"], follow_redirects=False)


def test_a_login_at_the_sites_provider_reads_every_page_as_the_user(
    secured: TestClient, provider: OpenIdProvider
) -> None:
    answer = _log_in(secured, "/ui/patients")
    assert answer.status_code == 303 and answer.headers["location"] == "/ui/patients"
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=") and "HttpOnly" in cookie and "SameSite=lax" in cookie
    for path in PAGES:
        page = secured.get(path, follow_redirects=False)
        assert page.status_code == 200, path
        assert "steward" in page.text
    assert len(_links(secured.get("/ui/patients").text, "patients")) == 1
    audit = secured.get("/ui/audit", params={"agent-name": "steward"}).text
    assert "GET /ui/patients" in audit  # the trail names the person, not only the UI's client
    assert provider.refused == []


def test_a_narrow_token_sees_only_what_its_scopes_allow(secured: TestClient, provider: OpenIdProvider) -> None:
    provider.user = User("radiographer", "user/ImagingStudy.rs user/Patient.rs")
    _log_in(secured, "/ui/patients")
    patients = secured.get("/ui/patients")
    assert patients.status_code == 200, patients.text
    assert len(_links(patients.text, "patients")) == 1
    audit = secured.get("/ui/audit")
    assert audit.status_code == 403 and "system/AuditEvent.s" in audit.text
    ingest = secured.get("/ui/ingest")
    assert ingest.status_code == 200
    assert "Not shown: system/Provenance.s" in ingest.text and "Not shown: system/AuditEvent.s" in ingest.text
    patient = _links(patients.text, "patients")[0]
    study = _links(secured.get(f"/ui/patients/{patient}").text, "studies")[0]
    page = secured.get(f"/ui/studies/{study}").text
    assert "Not shown: system/Observation.s" in page and "Not shown: system/Provenance.s" in page
    catalogue = secured.get("/ui/catalogue").text  # counts as /catalogue/counts would answer this token
    assert '<td>MR</td><td class="num withheld">&lt; 3</td>' in catalogue
    assert "Counts: system/Device.s is not among your token" in catalogue  # manufacturers: Device.s


def test_without_search_scopes_the_catalogue_page_shows_only_the_public_description(
    secured: TestClient, provider: OpenIdProvider
) -> None:
    provider.user = User("visitor", "openid")
    _log_in(secured, "/ui/catalogue")
    catalogue = secured.get("/ui/catalogue")
    assert catalogue.status_code == 200 and "fhir-bridge imaging dataset" in catalogue.text
    assert "<td>MR</td>" not in catalogue.text  # one subject: not listed, and no count says it exists
    assert "system/ImagingStudy.s, system/Patient.s are not among your token" in catalogue.text
    assert secured.get("/ui/patients").status_code == 403


def test_a_forged_session_or_a_foreign_login_answer_gets_no_page(secured: TestClient, provider: OpenIdProvider) -> None:
    assert secured.get("/ui/ingest", follow_redirects=False).status_code == 303  # no session: to the login
    secured.cookies.set(SESSION_COOKIE, "eyJ2Ijp7InRva2VuIjoieCJ9LCJleHAiOjk5OTk5OTk5OTl9.forged", path="/ui")
    assert secured.get("/ui/ingest", follow_redirects=False).status_code == 303
    secured.cookies.clear()
    secured.get("/ui/login", follow_redirects=False)  # a login started here ...
    answer = secured.get("/ui/callback", params={"code": "stolen", "state": "another"}, follow_redirects=False)
    assert answer.status_code == 400  # ... is not finished by an answer to another one
    assert SESSION_COOKIE not in answer.headers.get("set-cookie", "")
    denied = secured.get("/ui/callback", params={"error": "access_denied"}, follow_redirects=False)
    assert denied.status_code == 401 and "access_denied" in denied.text


def test_without_a_configured_provider_the_login_says_what_to_set(database_url: str) -> None:
    app = create_app(_settings(database_url, auth="smart"))
    with TestClient(app, base_url="http://testserver") as client:
        answer = client.get("/ui/ingest")  # redirected to the login, which cannot start
        assert answer.status_code == 503
        assert "FHIR_BRIDGE_UI_CLIENT_ID" in answer.text and "http://testserver/ui/callback" in answer.text
    app.state.services.close()


def test_the_ui_works_inside_a_host_application(ui: TestClient) -> None:
    host = FastAPI()
    host.mount("/bridge", ui.app)
    with TestClient(host, base_url="http://testserver") as client:
        page = client.get("/bridge/ui/patients")
        assert page.status_code == 200
        assert 'href="http://testserver/bridge/ui/static/ui.css"' in page.text
        patient = _links(page.text, "patients")[0]
        assert f'href="http://testserver/bridge/ui/patients/{patient}"' in page.text
        assert client.get("/bridge/ui/static/ui.css").headers["content-type"].startswith("text/css")
        home = client.get("/bridge/ui/login", params={"next": "/ui/audit"}, follow_redirects=False)
        assert home.headers["location"] == "/bridge/ui/audit"  # access control off: straight back, under the mount
        assert (
            client.get("/bridge/ui/login", params={"next": "//elsewhere.example"}, follow_redirects=False).headers[
                "location"
            ]
            == "/bridge/ui/ingest"
        )  # never to another site


def test_the_patient_list_pages_through_every_patient(database_url: str) -> None:
    app = create_app(_settings(database_url, auth="none"))
    with TestClient(app, base_url="http://testserver") as client:
        entries = [
            {
                "resource": {"resourceType": "Patient", "gender": "other"},
                "request": {"method": "POST", "url": "Patient"},
            }
            for _ in range(23)
        ]
        assert client.post("/fhir", json={"resourceType": "Bundle", "type": "batch", "entry": entries}).is_success
        first = client.get("/ui/patients").text
        following = re.search(r'href="([^"]*/ui/patients\?cursor=[^"]+)"', first)
        assert following is not None and len(_links(first, "patients")) == 20
        rest = client.get(following.group(1).replace("&amp;", "&")).text
        assert len(_links(rest, "patients")) == 3 and "cursor=" not in rest
        assert not set(_links(first, "patients")) & set(_links(rest, "patients"))
    app.state.services.close()
