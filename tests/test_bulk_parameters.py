"""Kick-off requests that cannot run are refused at once with a 400 (or 404) OperationOutcome;
``Prefer: handling=lenient`` turns unsupported parameters into warnings in the manifest."""

from __future__ import annotations

import orjson

from tests.bulk_client import create, group, kick_off, patient, run_export


def _refused(response, status: int = 400) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["severity"] == "error"
    return outcome["issue"][0]["diagnostics"]


def test_export_routes_win_over_reads_of_an_id_called_export(client) -> None:
    # without Prefer: respond-async this is the operation refusing, not a 404 read of Patient/$export
    assert "respond-async" in _refused(client.get("/fhir/Patient/$export"))
    assert "respond-async" in _refused(client.get("/fhir/$export"))
    assert "respond-async" in _refused(client.post("/fhir/Group/g1/$export"))
    assert "respond-async" in _refused(kick_off(client, "/fhir/$export", prefer="return=minimal"))


REFUSED = [  # (kick-off URL, what the diagnostics must name)
    ("/fhir/$export?_type=Patient,NotAType", "NotAType"),
    ("/fhir/Patient/$export?_type=Organization", "not in the Patient compartment"),
    ("/fhir/$export?_elements=id", "_elements"),
    ("/fhir/$export?includeAssociatedData=LatestProvenanceResources", "includeAssociatedData"),
    ("/fhir/$export?patient=Patient/1", "patient"),  # only Patient and Group exports take patients
    ("/fhir/$export?_since=yesterday", "_since"),
    ("/fhir/$export?_outputFormat=text/csv", "_outputFormat"),
    ("/fhir/$export?_typeFilter=modality=CT", "Type?query"),
    ("/fhir/$export?_type=ImagingStudy&_typeFilter=ImagingStudy%3Fmodality%3DCT%26_sort%3Dstarted", "_sort"),
    ("/fhir/$export?_type=ImagingStudy&_typeFilter=ImagingStudy%3Fnot-a-parameter%3D1", "not-a-parameter"),
    ("/fhir/$export?_type=ImagingStudy&_typeFilter=ImagingStudy%3Fstarted%3Dlast-week", "last-week"),
    ("/fhir/$export?_type=Patient&_typeFilter=ImagingStudy%3Fmodality%3DCT", "not exported by this request"),
]


def test_bad_parameters_are_refused(client) -> None:
    for url, expected in REFUSED:
        diagnostics = _refused(kick_off(client, url))
        assert expected in diagnostics, (url, diagnostics)
    assert client.app.state.services.bulk_exports.jobs.pending() == (False, None)  # no job was made


def test_post_kick_off_takes_a_parameters_resource(client) -> None:
    assert "Parameters" in _refused(kick_off(client, "/fhir/$export", method="POST", json=patient("X")))
    response = kick_off(client, "/fhir/$export", method="POST", content=b"<Parameters/>")
    assert response.status_code in (400, 415)


def test_unknown_group_and_job(client) -> None:
    assert "Group/nobody" in _refused(kick_off(client, "/fhir/Group/nobody/$export"), 404)
    _refused(client.get("/fhir/$export-status/0123456789abcdef0123456789abcdef"), 404)
    _refused(client.get("/fhir/$export-status/not-a-job"), 404)
    _refused(client.delete("/fhir/$export-status/0123456789abcdef0123456789abcdef"), 404)
    _refused(client.get("/fhir/$export-file/0123456789abcdef0123456789abcdef/1.ndjson"), 404)


def test_lenient_handling_ignores_what_is_unsupported_and_says_so(client) -> None:
    someone = create(client, patient("Lenz"))["id"]
    members = create(client, group(someone))["id"]
    export = run_export(
        client,
        f"/fhir/Group/{members}/$export?_type=Patient,Organization&_elements=id&_typeFilter=Patient%3Fbogus%3D1",
        prefer="respond-async, handling=lenient",
    )
    assert [orjson.loads(line)["id"] for line in export.lines("output")] == [someone]
    assert [item["type"] for item in export.manifest["error"]] == ["OperationOutcome"]
    warnings = [issue for line in export.lines("error") for issue in orjson.loads(line)["issue"]]
    assert {issue["severity"] for issue in warnings} == {"warning"}
    text = " ".join(issue["diagnostics"] for issue in warnings)
    assert "_elements" in text and "Organization" in text and "bogus" in text


def test_capability_statement_announces_bulk_export(client) -> None:
    statement = client.get("/fhir/metadata").json()
    assert "http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data" in statement["instantiates"]
    (rest,) = statement["rest"]
    definitions = {"system": next(o["definition"] for o in rest["operation"] if o["name"] == "export")}
    for resource in rest["resource"]:
        for operation in resource.get("operation", []):
            if operation["name"] == "export":
                definitions[resource["type"]] = operation["definition"]
    assert {k: v.rsplit("/", 1)[1] for k, v in definitions.items()} == {
        "system": "export",
        "Patient": "patient-export",
        "Group": "group-export",
    }


def test_since_is_exclusive_so_the_previous_transaction_time_exports_only_later_changes(client, app) -> None:
    """Bulk Data IG (export, _since): resources updated *after* the instant. A harvester that passes the
    previous export's transactionTime as _since gets what changed since, not that commit again."""
    try:
        first = create(client, patient("Before"))
        previous = run_export(client, "/fhir/$export?_type=Patient")
        assert [orjson.loads(line)["id"] for line in previous.lines("output", "Patient")] == [first["id"]]
        since = previous.manifest["transactionTime"]
        assert (
            client.get("/fhir/_history", params={"_count": 1}).json()["entry"][0]["response"]["lastModified"] == since
        )
        nothing_new = run_export(client, f"/fhir/$export?_type=Patient&_since={since}")
        assert nothing_new.lines("output") == []
        later = create(client, patient("After"))
        incremental = run_export(client, f"/fhir/$export?_type=Patient&_since={since}")
        assert [orjson.loads(line)["id"] for line in incremental.lines("output", "Patient")] == [later["id"]]
    finally:
        app.state.services.bulk_exports.worker.stop()
