"""Two real FHIR client libraries against the live server, on SQLite and on PostgreSQL.

* ``fhirpy`` (beda.software), its requests-based ``SyncFHIRClient``;
* ``fhirclient`` (SMART on FHIR), ``FHIRClient`` / ``FHIRServer`` and its R4 models.

Each test drives the library's own API (resources, search sets, ``fetch_all``, ``perform_iter``)
over HTTP, so it pins what these clients need from the server: write responses that carry the
stored resource, absolute ``next`` links under the base URL, history Bundles, status codes.
"""

from __future__ import annotations

import itertools
import uuid
from typing import Any

import pytest
import requests
from fhirclient.client import FHIRClient
from fhirclient.models.bundle import Bundle, BundleEntry, BundleEntryRequest
from fhirclient.models.patient import Patient
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import MultipleResourcesFound, ResourceNotFound

from tests.conftest import example

MRN_SYSTEM = "urn:oid:1.2.36.146.595.217.0.1"  # the system of Patient-example's identifier
TEST_SYSTEM = "urn:fhir-bridge:test"
PAGED = 25
PAGE_SIZE = 10
MAX_ITEMS = 200  # a safety stop: a server that repeats pages must fail the test, not hang it


def _patient(family: str | None = None, mrn: str | None = None) -> dict[str, Any]:
    """Patient-example without its id and its reference to an Organization that is not stored."""
    data = example("Patient-example")
    del data["id"], data["managingOrganization"]
    if family is not None:
        data["name"][0]["family"] = family
    if mrn is not None:
        data["identifier"][0]["value"] = mrn
    return data


def _pager(index: int, run: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": TEST_SYSTEM, "value": f"{run}-{index:02d}"}],
        "name": [{"family": f"Pager{run}", "given": [f"P{index:02d}"]}],
    }


# fhirpy ---------------------------------------------------------------------------------------


@pytest.fixture
def fhirpy_client(live_server: str) -> SyncFHIRClient:
    return SyncFHIRClient(live_server)


def test_fhirpy_creates_a_patient_and_reads_it_back(fhirpy_client: SyncFHIRClient) -> None:
    patient = fhirpy_client.resource("Patient", **_patient())
    patient.save()

    assert patient.id
    assert patient["meta"]["versionId"] == "1"
    read = fhirpy_client.reference("Patient", patient.id).to_resource()
    assert read.id == patient.id
    assert read["name"][0]["family"] == "Chalmers"
    assert read["name"][0]["given"] == ["Peter", "James"]
    assert read["birthDate"] == "1974-12-25"
    assert read["identifier"][0]["value"] == "12345"
    assert read["meta"]["versionId"] == "1"
    # the plain-dict read path of the client gives the same resource
    assert fhirpy_client.get("Patient", patient.id)["meta"]["lastUpdated"] == read["meta"]["lastUpdated"]


def test_fhirpy_update_makes_version_2_and_an_unchanged_save_makes_none(fhirpy_client: SyncFHIRClient) -> None:
    patient = fhirpy_client.resource("Patient", **_patient())
    patient.save()
    patient_id = patient.id

    patient["active"] = False
    patient["gender"] = "other"
    patient.save()
    assert patient.id == patient_id
    assert patient["meta"]["versionId"] == "2"

    read = fhirpy_client.reference("Patient", patient_id).to_resource()
    assert read["active"] is False
    assert read["gender"] == "other"
    assert read["meta"]["versionId"] == "2"

    patient.save()  # nothing changed: like HAPI, the server keeps version 2
    assert patient["meta"]["versionId"] == "2"
    assert fhirpy_client.reference("Patient", patient_id).to_resource()["meta"]["versionId"] == "2"


def test_fhirpy_searches_patients_by_family_and_by_identifier(fhirpy_client: SyncFHIRClient) -> None:
    chalmers = fhirpy_client.resource("Patient", **_patient("Chalmers", "12345"))
    chalmersson = fhirpy_client.resource("Patient", **_patient("Chalmersson", "23456"))
    everhart = fhirpy_client.resource("Patient", **_patient("Everhart", "34567"))
    for patient in (chalmers, chalmersson, everhart):
        patient.save()
    patients = fhirpy_client.resources("Patient")

    # string search matches the start of the name, case-insensitively
    assert {p.id for p in patients.search(family="chalmers").fetch()} == {chalmers.id, chalmersson.id}
    assert [p.id for p in patients.search(family__exact="Chalmers").fetch()] == [chalmers.id]
    assert [p.id for p in patients.search(identifier=f"{MRN_SYSTEM}|34567").fetch()] == [everhart.id]
    assert patients.search(identifier=f"{MRN_SYSTEM}|99999").fetch() == []
    assert patients.search(identifier="23456").get().id == chalmersson.id
    assert patients.search(family="Chalmers").count() == 2
    assert patients.count() == 3


def test_fhirpy_conditional_create_with_if_none_exist_returns_the_existing_patient(live_server: str) -> None:
    criteria = f"identifier={TEST_SYSTEM}|conditional-1"
    conditional = SyncFHIRClient(live_server, extra_headers={"If-None-Exist": criteria})
    data = _patient()
    data["identifier"] = [{"system": TEST_SYSTEM, "value": "conditional-1"}]

    first, first_created = conditional.resources("Patient").get_or_create(conditional.resource("Patient", **data))
    second, second_created = conditional.resources("Patient").get_or_create(conditional.resource("Patient", **data))

    assert first_created is True
    assert second_created is False
    assert second.id == first.id
    assert second["meta"]["versionId"] == "1"
    plain = SyncFHIRClient(live_server)
    assert [p.id for p in plain.resources("Patient").search(identifier=f"{TEST_SYSTEM}|conditional-1").fetch()] == [
        first.id
    ]


def test_fhirpy_conditional_create_matching_two_patients_raises_multiple_resources_found(live_server: str) -> None:
    plain = SyncFHIRClient(live_server)
    plain.resource("Patient", **_patient("Twin", "1")).save()
    plain.resource("Patient", **_patient("Twin", "2")).save()
    conditional = SyncFHIRClient(live_server, extra_headers={"If-None-Exist": "family=Twin"})

    with pytest.raises(MultipleResourcesFound):
        conditional.resources("Patient").get_or_create(conditional.resource("Patient", **_patient("Twin", "3")))

    assert plain.resources("Patient").search(family="Twin").count() == 2


def test_fhirpy_deleted_patient_is_gone_from_read_and_search(fhirpy_client: SyncFHIRClient) -> None:
    patient = fhirpy_client.resource("Patient", **_patient("Gone"))
    patient.save()
    keeper = fhirpy_client.resource("Patient", **_patient("Kept"))
    keeper.save()

    patient.delete()

    with pytest.raises(ResourceNotFound) as gone:
        fhirpy_client.reference("Patient", patient.id).to_resource()
    assert "deleted" in str(gone.value)
    assert fhirpy_client.resources("Patient").search(family="Gone").fetch() == []
    assert [p.id for p in fhirpy_client.resources("Patient").fetch()] == [keeper.id]


def test_fhirpy_reads_instance_history_newest_first_and_vreads_version_1(fhirpy_client: SyncFHIRClient) -> None:
    patient = fhirpy_client.resource("Patient", **_patient())
    patient.save()
    patient["active"] = False
    patient.save()
    patient.delete()
    reference = fhirpy_client.reference("Patient", patient.id)

    history = reference.execute("_history", method="get")

    assert history["resourceType"] == "Bundle"
    assert history["type"] == "history"
    entries = history["entry"]
    assert [e["request"]["method"] for e in entries] == ["DELETE", "PUT", "POST"]
    assert [e["response"]["etag"] for e in entries] == ['W/"3"', 'W/"2"', 'W/"1"']
    assert "resource" not in entries[0]
    assert [e["resource"]["active"] for e in entries[1:]] == [False, True]
    assert all(e["fullUrl"].endswith(f"/Patient/{patient.id}") for e in entries)
    first = fhirpy_client.execute(f"Patient/{patient.id}/_history/1", method="get")
    assert first["meta"]["versionId"] == "1"
    assert first["active"] is True


def test_fhirpy_pages_through_every_patient_exactly_once(live_server: str) -> None:
    run = uuid.uuid4().hex[:6]
    requested: list[str] = []

    def record(response: requests.Response, *args: Any, **kwargs: Any) -> None:
        if response.request.method == "GET":
            requested.append(response.url)

    fhirpy_client = SyncFHIRClient(live_server, requests_config={"hooks": {"response": [record]}})
    created = set()
    for index in range(PAGED):
        patient = fhirpy_client.resource("Patient", **_pager(index, run))
        patient.save()
        created.add(patient.id)
    fhirpy_client.resource("Patient", **_patient()).save()  # not a match: must not be paged in
    search = fhirpy_client.resources("Patient").search(family=f"Pager{run}").limit(PAGE_SIZE)

    first_page = search.fetch_raw()
    assert len(first_page["entry"]) == PAGE_SIZE
    assert any(link["relation"] == "next" for link in first_page["link"])
    requested.clear()

    seen = [p.id for p in itertools.islice(search, MAX_ITEMS)]

    assert len(seen) == PAGED
    assert len(set(seen)) == PAGED
    assert set(seen) == created
    assert len(requested) == 3  # pages of 10, 10 and 5
    assert all(url.startswith(live_server) for url in requested)
    assert sorted(p.id for p in search.fetch_all()) == sorted(created)


def test_fhirpy_paging_sees_the_first_pages_result_set_once_while_patients_change(
    fhirpy_client: SyncFHIRClient,
) -> None:
    run = uuid.uuid4().hex[:6]
    created = []
    for index in range(PAGED):
        patient = fhirpy_client.resource("Patient", **_pager(index, run))
        patient.save()
        created.append(patient)
    search = fhirpy_client.resources("Patient").search(family=f"Pager{run}").limit(PAGE_SIZE)

    seen = []
    for patient in itertools.islice(search, MAX_ITEMS):  # fhirpy fetches the next page only when asked for it
        seen.append(patient.id)
        if len(seen) == PAGE_SIZE:  # between pages 1 and 2: update a seen patient, delete an unseen one
            created[0]["active"] = False
            created[0].save()
            assert created[0]["meta"]["versionId"] == "2"
            created[-1].delete()

    # paging is pinned to the commit of the first page: the deleted patient is still in that result set
    assert len(seen) == len(set(seen)) == PAGED
    assert set(seen) == {p.id for p in created}


# fhirclient (SMART on FHIR) -------------------------------------------------------------------


def _smart(base: str) -> FHIRClient:
    return FHIRClient(settings={"app_id": "fhir-bridge-tests", "api_base": base})


@pytest.fixture
def smart(live_server: str) -> FHIRClient:
    return _smart(live_server)


def test_fhirclient_prepares_from_the_capability_statement(smart: FHIRClient) -> None:
    assert smart.prepare() is True  # an open server: no SMART security in the statement
    statement = smart.server.capabilityStatement
    assert statement.fhirVersion == "4.0.1"
    rest = statement.rest[0]
    assert rest.mode == "server"
    patient = next(r for r in rest.resource if r.type == "Patient")
    assert {"read", "create", "update", "delete", "search-type", "history-instance"} <= {
        i.code for i in patient.interaction
    }
    assert patient.conditionalCreate is True
    assert {"family", "identifier"} <= {p.name for p in patient.searchParam}


def test_fhirclient_creates_a_patient_and_reads_it_back(smart: FHIRClient) -> None:
    created = Patient(_patient()).create(smart.server)

    assert created["resourceType"] == "Patient"
    assert created["meta"]["versionId"] == "1"
    read = Patient.read(created["id"], smart.server)
    assert read.id == created["id"]
    assert read.name[0].family == "Chalmers"
    assert read.name[0].given == ["Peter", "James"]
    assert read.birthDate.isostring == "1974-12-25"
    assert read.identifier[0].system == MRN_SYSTEM
    assert read.identifier[0].value == "12345"
    assert read.meta.versionId == "1"


def test_fhirclient_update_makes_version_2(smart: FHIRClient) -> None:
    patient_id = Patient(_patient()).create(smart.server)["id"]
    patient = Patient.read(patient_id, smart.server)

    patient.active = False
    patient.name[0].family = "Chalmers-Windsor"
    updated = patient.update()

    assert updated["id"] == patient_id
    assert updated["meta"]["versionId"] == "2"
    read = Patient.read(patient_id, smart.server)
    assert read.active is False
    assert read.name[0].family == "Chalmers-Windsor"
    assert read.meta.versionId == "2"


def test_fhirclient_searches_patients_by_family_and_by_identifier(smart: FHIRClient) -> None:
    ids = {
        family: Patient(_patient(family, mrn)).create(smart.server)["id"]
        for family, mrn in (("Chalmers", "12345"), ("Chalmersson", "23456"), ("Everhart", "34567"))
    }

    def found(struct: dict[str, Any]) -> list[str]:
        return [r.id for r in Patient.where(struct).perform_resources_iter(smart.server)]

    assert sorted(found({"family": "Chalmers"})) == sorted([ids["Chalmers"], ids["Chalmersson"]])
    assert found({"family": {"$exact": "Chalmers"}}) == [ids["Chalmers"]]
    assert found({"identifier": f"{MRN_SYSTEM}|34567"}) == [ids["Everhart"]]
    assert found({"identifier": f"{MRN_SYSTEM}|99999"}) == []
    assert found({"family": "Everhart", "identifier": "23456"}) == []


def test_fhirclient_conditional_create_with_if_none_exist_returns_the_existing_patient(live_server: str) -> None:
    conditional = _smart(live_server)
    conditional.server.session.headers["If-None-Exist"] = f"identifier={TEST_SYSTEM}|conditional-2"
    patient = Patient(_patient())
    patient.identifier[0].system = TEST_SYSTEM
    patient.identifier[0].value = "conditional-2"

    first = conditional.server.post_json("Patient", patient.as_json())
    second = conditional.server.post_json("Patient", patient.as_json())

    assert first.status_code == 201
    assert second.status_code == 200
    assert second.json()["id"] == first.json()["id"]
    assert second.json()["meta"]["versionId"] == "1"
    search = Patient.where({"identifier": f"{TEST_SYSTEM}|conditional-2"})
    assert [r.id for r in search.perform_resources_iter(_smart(live_server).server)] == [first.json()["id"]]


def test_fhirclient_transaction_if_none_exist_creates_once(smart: FHIRClient) -> None:
    def transaction() -> Bundle:
        patient = Patient(_patient())
        patient.identifier[0].system = TEST_SYSTEM
        patient.identifier[0].value = "conditional-3"
        entry = BundleEntry()
        entry.fullUrl = f"urn:uuid:{uuid.uuid4()}"
        entry.resource = patient
        entry.request = BundleEntryRequest(
            {"method": "POST", "url": "Patient", "ifNoneExist": f"identifier={TEST_SYSTEM}|conditional-3"}
        )
        return Bundle({"type": "transaction", "entry": [entry.as_json()]})

    first = Bundle(transaction().create(smart.server))
    second = Bundle(transaction().create(smart.server))

    assert first.type == "transaction-response"
    assert first.entry[0].response.status.startswith("201")
    assert second.entry[0].response.status.startswith("200")
    first_id = first.entry[0].response.location.split("/")[1]
    second_id = second.entry[0].response.location.split("/")[1]
    assert second_id == first_id
    search = Patient.where({"identifier": f"{TEST_SYSTEM}|conditional-3"})
    assert [r.id for r in search.perform_resources_iter(smart.server)] == [first_id]


def test_fhirclient_deleted_patient_reads_as_410_and_leaves_search(smart: FHIRClient) -> None:
    patient_id = Patient(_patient("Gone")).create(smart.server)["id"]
    kept_id = Patient(_patient("Kept")).create(smart.server)["id"]

    Patient.read(patient_id, smart.server).delete()

    with pytest.raises(requests.HTTPError) as gone:
        Patient.read(patient_id, smart.server)
    assert gone.value.response.status_code == 410
    assert list(Patient.where({"family": "Gone"}).perform_resources_iter(smart.server)) == []
    assert [r.id for r in Patient.where({}).perform_resources_iter(smart.server)] == [kept_id]


def test_fhirclient_reads_instance_history_as_a_bundle_and_vreads_version_1(smart: FHIRClient) -> None:
    patient_id = Patient(_patient()).create(smart.server)["id"]
    patient = Patient.read(patient_id, smart.server)
    patient.active = False
    patient.update()
    patient.delete()

    history = Bundle.read_from(f"Patient/{patient_id}/_history", smart.server)

    assert history.type == "history"
    assert [e.request.method for e in history.entry] == ["DELETE", "PUT", "POST"]
    assert [e.response.etag for e in history.entry] == ['W/"3"', 'W/"2"', 'W/"1"']
    assert [e.response.status.split()[0] for e in history.entry] == ["204", "200", "201"]
    assert history.entry[0].resource is None
    assert [e.resource.active for e in history.entry[1:]] == [False, True]
    assert [e.resource.meta.versionId for e in history.entry[1:]] == ["2", "1"]
    first = Patient.read_from(f"Patient/{patient_id}/_history/1", smart.server)
    assert first.meta.versionId == "1"
    assert first.active is True


def test_fhirclient_pages_through_every_patient_exactly_once(smart: FHIRClient) -> None:
    run = uuid.uuid4().hex[:6]
    created = {Patient(_pager(index, run)).create(smart.server)["id"] for index in range(PAGED)}
    Patient(_patient()).create(smart.server)  # not a match: must not be paged in
    search = Patient.where({"family": f"Pager{run}", "_count": str(PAGE_SIZE)})

    pages = list(itertools.islice(search.perform_iter(smart.server), MAX_ITEMS // PAGE_SIZE))

    assert [len(page.entry) for page in pages] == [10, 10, 5]
    seen = [entry.resource.id for page in pages for entry in page.entry]
    assert len(set(seen)) == len(seen) == PAGED
    assert set(seen) == created
    assert all(entry.search.mode == "match" for page in pages for entry in page.entry)
    assert "next" not in [link.relation for link in pages[-1].link]  # the last page has no next link
    resources = list(itertools.islice(search.perform_resources_iter(smart.server), MAX_ITEMS))
    assert sorted(r.id for r in resources) == sorted(created)


def test_fhirclient_follows_history_next_links_through_every_version(smart: FHIRClient) -> None:
    patient_id = Patient(_patient()).create(smart.server)["id"]
    patient = Patient.read(patient_id, smart.server)
    for gender in ("female", "other", "unknown", "male"):  # Patient-example is male: each one is a change
        patient.gender = gender
        patient.update()

    bundle = Bundle.read_from(f"Patient/{patient_id}/_history?_count=2", smart.server)
    pages = [bundle]
    while len(pages) < 10 and (next_url := next((link.url for link in bundle.link if link.relation == "next"), None)):
        bundle = Bundle(smart.server.request_json(next_url))
        pages.append(bundle)

    assert [len(page.entry) for page in pages] == [2, 2, 1]
    assert [entry.resource.meta.versionId for page in pages for entry in page.entry] == ["5", "4", "3", "2", "1"]
    genders = [entry.resource.gender for page in pages for entry in page.entry]
    assert genders == ["male", "unknown", "other", "female", "male"]


# fhirpy: conditional create from search parameters, get_or_create, patch, conditional patch, is_valid ------
def test_fhirpy_create_with_search_parameters_creates_once(fhirpy_client: SyncFHIRClient) -> None:
    """fhirpy's resource.create(**search) POSTs Patient?identifier=...: a conditional create (If-None-Exist)."""
    data = _patient()
    data["identifier"] = [{"system": TEST_SYSTEM, "value": "fhirpy-create"}]
    first = fhirpy_client.resource("Patient", **data)
    first.create(identifier=f"{TEST_SYSTEM}|fhirpy-create")
    second = fhirpy_client.resource("Patient", **dict(data, gender="female"))
    second.create(identifier=f"{TEST_SYSTEM}|fhirpy-create")

    assert first.id and second.id == first.id
    assert second["gender"] == "male"  # the existing Patient, not the one sent
    found = fhirpy_client.resources("Patient").search(identifier=f"{TEST_SYSTEM}|fhirpy-create").fetch()
    assert [p.id for p in found] == [first.id]


def test_fhirpy_get_or_create_with_search_parameters(fhirpy_client: SyncFHIRClient) -> None:
    data = _patient()
    data["identifier"] = [{"system": TEST_SYSTEM, "value": "fhirpy-goc"}]
    search = fhirpy_client.resources("Patient").search(identifier=f"{TEST_SYSTEM}|fhirpy-goc")

    made, created = search.get_or_create(fhirpy_client.resource("Patient", **data))
    again, created_again = search.get_or_create(fhirpy_client.resource("Patient", **data))

    assert (created, created_again) == (True, False)
    assert again.id == made.id
    assert search.count() == 1


def test_fhirpy_patch_sends_a_merge_patch(fhirpy_client: SyncFHIRClient) -> None:
    """fhirpy's patch() sends the changed fields as a JSON object (application/json): a JSON Merge Patch,
    null removing an element."""
    patient = fhirpy_client.resource("Patient", **_patient())
    patient.save()
    patient.patch(active=False)
    assert patient["meta"]["versionId"] == "2"

    patched = fhirpy_client.reference("Patient", patient.id).patch(gender="female", birthDate=None)

    assert patched["gender"] == "female" and "birthDate" not in patched
    read = fhirpy_client.reference("Patient", patient.id).to_resource()
    assert (read["active"], read["gender"], read["meta"]["versionId"]) == (False, "female", "3")
    assert read["name"][0]["family"] == "Chalmers"  # untouched


def test_fhirpy_conditional_patch_changes_the_single_match(fhirpy_client: SyncFHIRClient) -> None:
    data = _patient()
    data["identifier"] = [{"system": TEST_SYSTEM, "value": "fhirpy-patch"}]
    fhirpy_client.resource("Patient", **data).save()
    search = fhirpy_client.resources("Patient").search(identifier=f"{TEST_SYSTEM}|fhirpy-patch")

    patched = search.patch(active=False)

    assert patched["active"] is False
    assert search.get()["active"] is False
    fhirpy_client.resource("Patient", **data).save()  # now two match: the server refuses (412)
    with pytest.raises(MultipleResourcesFound):
        search.patch(active=True)


def test_fhirpy_is_valid_asks_validate(fhirpy_client: SyncFHIRClient) -> None:
    """fhirpy's is_valid() POSTs the resource to [type]/$validate and reads the OperationOutcome."""
    assert fhirpy_client.resource("Patient", **_patient()).is_valid() is True
    assert fhirpy_client.resource("Patient", birthDate="next Tuesday").is_valid() is False
    assert fhirpy_client.resources("Patient").count() == 0  # validation wrote nothing
