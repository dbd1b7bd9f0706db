"""What an export holds: ``_type``, ``_since`` (with deletions), ``_typeFilter``, Patient and Group
exports and the ``patient`` parameter, GET and POST kick-offs, on SQLite and PostgreSQL."""

from __future__ import annotations

import orjson
import pytest

from tests.bulk_client import Population, create, observation, populate, read_raw, run_export

DELETE_ENTRY_KEYS = {"resourceType", "id", "meta", "type", "entry"}


@pytest.fixture
def population(client) -> Population:
    return populate(client)


def _ids(lines: list[str], res_type: str | None = None) -> set[str]:
    found = [orjson.loads(line) for line in lines]
    return {r["id"] for r in found if res_type is None or r["resourceType"] == res_type}


def _types(export) -> list[str]:
    return sorted(item["type"] for item in export.manifest["output"])


def test_type_limits_the_export_to_those_types(client, population: Population) -> None:
    export = run_export(client, "/fhir/$export?_type=Patient,ImagingStudy")
    assert _types(export) == ["ImagingStudy", "Patient"]
    assert _ids(export.lines(res_type="Patient")) == set(population.patients)
    repeated = run_export(client, "/fhir/$export?_type=Group&_type=Organization&_outputFormat=ndjson")
    assert _types(repeated) == ["Group", "Organization"]


def _newest_write(client) -> str:
    return client.get("/fhir/_history", params={"_count": 1}).json()["entry"][0]["response"]["lastModified"]


def test_since_exports_changes_and_lists_deletions(client, population: Population) -> None:
    p1, p2, _ = population.patients
    old = create(client, observation(None, "laboratory", "deleted before _since"))["id"]
    assert client.delete(f"/fhir/Observation/{old}").status_code == 200
    since = _newest_write(client)  # the deletion's time: _since is exclusive (updated after), so it is not listed
    study = orjson.loads(read_raw(client, "ImagingStudy", population.studies[p1][0]))
    study["status"] = "cancelled"
    assert client.put(f"/fhir/ImagingStudy/{study['id']}", json=study).status_code == 200
    gone = population.observations[p2][0]
    assert client.delete(f"/fhir/Observation/{gone}").status_code == 200
    added = create(client, observation(p2, "imaging", "new"))["id"]

    export = run_export(client, "/fhir/$export", params={"_since": since, "_type": "ImagingStudy,Observation"})

    assert export.lines("output", "ImagingStudy") == [read_raw(client, "ImagingStudy", study["id"])]
    assert export.lines("output", "Observation") == [read_raw(client, "Observation", added)]
    assert [item["type"] for item in export.manifest["deleted"]] == ["Bundle"]
    (line,) = export.lines("deleted")
    bundle = orjson.loads(line)
    assert set(bundle) == DELETE_ENTRY_KEYS and bundle["type"] == "transaction"
    assert bundle["entry"] == [{"request": {"method": "DELETE", "url": f"Observation/{gone}"}}]
    history = client.get(f"/fhir/Observation/{gone}/_history").json()["entry"][0]["response"]
    assert bundle["meta"]["lastUpdated"] == history["lastModified"]
    # _since is exclusive: a harvester that passes the last transactionTime does not get that commit again
    again = run_export(client, "/fhir/$export", params={"_since": export.manifest["transactionTime"]})
    assert again.lines() == []
    assert again.manifest["deleted"] == []


def test_since_patient_export_lists_deletions_in_the_compartments(client, population: Population) -> None:
    p1 = population.patients[0]
    orphan = create(client, observation(None, "laboratory", "no subject"))["id"]
    since = _newest_write(client)
    for deleted in (population.observations[p1][0], orphan):
        assert client.delete(f"/fhir/Observation/{deleted}").status_code == 200
    members_only = run_export(client, f"/fhir/Group/{population.group}/$export", params={"_since": since})
    everyone = run_export(client, "/fhir/Patient/$export", params={"_since": since, "_type": "Observation"})
    for export in (members_only, everyone):
        urls = [e["request"]["url"] for line in export.lines("deleted") for e in orjson.loads(line)["entry"]]
        assert urls == [f"Observation/{population.observations[p1][0]}"]  # the orphan is in no compartment
    outside = run_export(client, f"/fhir/Group/{population.group}/$export", params={"_since": "2999-01-01"})
    assert outside.manifest["output"] == [] and outside.manifest["deleted"] == []


def test_type_filter_selects_with_fhir_search(client, population: Population) -> None:
    p1, p2, p3 = population.patients
    imaging = create(client, observation(p3, "imaging", "lesion"))["id"]
    ct = {s for p in population.patients for s in population.studies[p][:1]}  # the first study of each is CT

    export = run_export(
        client,
        "/fhir/$export",
        params=[("_type", "ImagingStudy,Observation,Patient"), ("_typeFilter", "ImagingStudy?modality=CT")],
    )
    assert _ids(export.lines(res_type="ImagingStudy")) == ct
    assert len(export.lines(res_type="Observation")) == 4  # no filter for this type: all of them
    assert _ids(export.lines(res_type="Patient")) == set(population.patients)

    # several queries for one type are ORed; commas inside a value stay in that query (escaped or not)
    ored = run_export(
        client,
        "/fhir/$export",
        params=[
            ("_type", "Observation,ImagingStudy"),
            ("_typeFilter", f"Observation?category=imaging,Observation?subject=Patient/{p1}"),
            ("_typeFilter", "ImagingStudy?modality=CT%2CMR&subject=Patient/" + p2),
        ],
    )
    assert _ids(ored.lines(res_type="Observation")) == {imaging, *population.observations[p1]}
    assert _ids(ored.lines(res_type="ImagingStudy")) == set(population.studies[p2])
    chained = run_export(
        client, "/fhir/$export", params={"_type": "ImagingStudy", "_typeFilter": "ImagingStudy?subject.name=Birk"}
    )
    assert _ids(chained.lines()) == set(population.studies[p2])


def test_patient_export_holds_the_patient_compartments(client, population: Population) -> None:
    orphan = create(client, observation(None, "laboratory", "no subject"))["id"]
    export = run_export(client, "/fhir/Patient/$export")
    assert _types(export) == ["Group", "ImagingStudy", "Observation", "Patient"]  # not the Organization
    assert _ids(export.lines(res_type="Patient")) == set(population.patients)
    assert _ids(export.lines(res_type="ImagingStudy")) == {s for ids in population.studies.values() for s in ids}
    assert orphan not in _ids(export.lines(res_type="Observation"))
    for line in export.lines():
        resource = orjson.loads(line)
        assert line == read_raw(client, resource["resourceType"], resource["id"])
    filtered = run_export(
        client, "/fhir/Patient/$export", params={"_type": "ImagingStudy", "_typeFilter": "ImagingStudy?modality=MR"}
    )
    assert _ids(filtered.lines()) == {population.studies[p][1] for p in population.patients}


def test_group_export_holds_its_members_data(client, population: Population) -> None:
    p1, p2, p3 = population.patients
    export = run_export(client, f"/fhir/Group/{population.group}/$export")
    assert _ids(export.lines(res_type="Patient")) == {p1, p2}
    assert _ids(export.lines(res_type="ImagingStudy")) == {*population.studies[p1], *population.studies[p2]}
    assert _ids(export.lines(res_type="Observation")) == {*population.observations[p1], *population.observations[p2]}
    assert _ids(export.lines(res_type="Group")) == {population.group}  # it refers to its members
    assert not {*population.studies[p3], p3} & _ids(export.lines())


def test_post_kick_off_with_parameters(client, population: Population) -> None:
    p1, p2, _ = population.patients
    parameters = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "_type", "valueString": "Patient,ImagingStudy"},
            {"name": "patient", "valueReference": {"reference": f"Patient/{p2}"}},
            {"name": "_outputFormat", "valueString": "application/fhir+ndjson"},
        ],
    }
    export = run_export(client, f"/fhir/Group/{population.group}/$export", method="POST", json=parameters)
    assert _ids(export.lines()) == {p2, *population.studies[p2]}
    assert export.manifest["request"] == f"http://testserver/fhir/Group/{population.group}/$export"
    everyone = run_export(
        client,
        "/fhir/Patient/$export",
        method="POST",
        json={"resourceType": "Parameters", "parameter": [{"name": "_type", "valueString": "Patient"}]},
    )
    assert _ids(everyone.lines()) == set(population.patients)
    assert p1 in _ids(everyone.lines())
