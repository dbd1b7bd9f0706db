"""Instance, type and system _history with _since, _at, _count and paging."""

from __future__ import annotations

import time
from datetime import UTC, datetime


def make_versions(client) -> str:
    created = client.post("/fhir/Patient", json={"resourceType": "Patient", "gender": "male"}).json()
    url = f"/fhir/Patient/{created['id']}"
    client.put(url, json=dict(created, gender="female"))
    client.delete(url)
    return created["id"]


def test_instance_history_lists_every_version_newest_first(client):
    patient_id = make_versions(client)
    bundle = client.get(f"/fhir/Patient/{patient_id}/_history").json()
    assert bundle["type"] == "history"
    entries = bundle["entry"]
    assert [e["response"]["etag"] for e in entries] == ['W/"3"', 'W/"2"', 'W/"1"']
    assert [e["request"]["method"] for e in entries] == ["DELETE", "PUT", "POST"]
    assert [e["response"]["status"] for e in entries] == ["204 No Content", "200 OK", "201 Created"]
    assert "resource" not in entries[0]
    assert entries[1]["resource"]["gender"] == "female"
    assert entries[2]["fullUrl"] == f"http://testserver/fhir/Patient/{patient_id}"


def test_history_of_unknown_resource_is_404(client):
    assert client.get("/fhir/Patient/nobody/_history").status_code == 404


def test_type_and_system_history_cover_all_writes(client):
    make_versions(client)
    client.post("/fhir/Practitioner", json={"resourceType": "Practitioner"})
    assert len(client.get("/fhir/Patient/_history").json()["entry"]) == 3
    system = client.get("/fhir/_history").json()["entry"]
    assert [e["request"]["method"] for e in system] == ["POST", "DELETE", "PUT", "POST"]
    assert system[0]["resource"]["resourceType"] == "Practitioner"


def test_history_since_keeps_later_versions_only(client):
    client.post("/fhir/Patient", json={"resourceType": "Patient"})
    time.sleep(0.01)
    since = datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    time.sleep(0.01)
    later = client.post("/fhir/Patient", json={"resourceType": "Patient"}).json()
    entries = client.get("/fhir/Patient/_history", params={"_since": since}).json()["entry"]
    assert [e["resource"]["id"] for e in entries] == [later["id"]]
    assert client.get("/fhir/_history", params={"_since": "yesterday"}).status_code == 400


def test_history_at_gives_versions_current_then(client):
    created = client.post("/fhir/Patient", json={"resourceType": "Patient", "gender": "male"}).json()
    time.sleep(0.01)
    at = datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    time.sleep(0.01)
    client.put(f"/fhir/Patient/{created['id']}", json=dict(created, gender="female"))
    entries = client.get(f"/fhir/Patient/{created['id']}/_history", params={"_at": at}).json()["entry"]
    assert [e["resource"]["gender"] for e in entries] == ["male"]


def test_history_pages_with_count_visit_every_version_once(client):
    ids = [client.post("/fhir/Patient", json={"resourceType": "Patient"}).json()["id"] for _ in range(7)]
    seen, url, pages = [], "/fhir/Patient/_history?_count=3", 0
    while url:
        bundle = client.get(url).json()
        pages += 1
        seen += [e["resource"]["id"] for e in bundle["entry"]]
        url = next((link["url"] for link in bundle["link"] if link["relation"] == "next"), None)
    assert pages == 3
    assert seen == list(reversed(ids))


def test_tampered_history_cursor_is_400(client):
    for _ in range(3):
        client.post("/fhir/Patient", json={"resourceType": "Patient"})
    bundle = client.get("/fhir/_history?_count=1").json()
    next_url = next(link["url"] for link in bundle["link"] if link["relation"] == "next")
    tampered = next_url[:-3] + ("AAA" if not next_url.endswith("AAA") else "BBB")
    response = client.get(tampered)
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == ["_cursor"]


def _links(bundle: dict) -> dict[str, str]:
    return {link["relation"]: link["url"] for link in bundle["link"]}


def test_history_has_a_total_and_first_previous_next_last_links(client):
    """bundle.html#paging and http.html#history: total, and the paging links, all as of the first page's
    commit: versions written while paging are in none of the pages and do not change the total."""
    created = client.post("/fhir/Patient", json={"resourceType": "Patient", "gender": "male"}).json()
    url = f"/fhir/Patient/{created['id']}"
    for gender in ("female", "other", "unknown", "male", "female", "other"):
        client.put(url, json=dict(created, gender=gender))
    first = client.get(f"{url}/_history", params={"_count": 3}).json()
    assert first["total"] == 7
    assert set(_links(first)) == {"self", "first", "next", "last"}  # no previous page before the first
    client.put(url, json=dict(created, gender="unknown"))  # version 8: after the history was pinned
    pages = [first]
    while "next" in _links(pages[-1]) and len(pages) < 5:
        pages.append(client.get(_links(pages[-1])["next"]).json())
    versions = [[e["response"]["etag"] for e in page["entry"]] for page in pages]
    assert versions == [['W/"7"', 'W/"6"', 'W/"5"'], ['W/"4"', 'W/"3"', 'W/"2"'], ['W/"1"']]
    assert all(page["total"] == 7 for page in pages)
    last = client.get(_links(first)["last"]).json()
    assert [e["response"]["etag"] for e in last["entry"]] == ['W/"1"']
    back = client.get(_links(last)["previous"]).json()
    assert [e["response"]["etag"] for e in back["entry"]] == ['W/"4"', 'W/"3"', 'W/"2"']
    again = client.get(_links(back)["first"]).json()
    assert [e["response"]["etag"] for e in again["entry"]] == ['W/"7"', 'W/"6"', 'W/"5"']
    fresh = client.get(f"{url}/_history", params={"_count": 3}).json()
    assert fresh["total"] == 8 and fresh["entry"][0]["response"]["etag"] == 'W/"8"'


def test_a_history_on_one_page_has_a_total_and_no_paging_links(client):
    patient_id = make_versions(client)
    bundle = client.get(f"/fhir/Patient/{patient_id}/_history").json()
    assert bundle["total"] == 3
    assert set(_links(bundle)) == {"self"}
    empty = client.get("/fhir/Observation/_history").json()
    assert empty["total"] == 0 and "entry" not in empty


def test_history_since_pages_and_last_link_list_exactly_the_versions_since(client):
    """The versions of a _since history, read through next links and from the last page back, are
    those written at or after the instant: none before it, none missed at either end."""
    before = [client.post("/fhir/Patient", json={"resourceType": "Patient"}).json()["id"] for _ in range(4)]
    time.sleep(0.01)
    since = datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    time.sleep(0.01)
    client.put(f"/fhir/Patient/{before[0]}", json={"resourceType": "Patient", "id": before[0], "gender": "male"})
    after = [client.post("/fhir/Patient", json={"resourceType": "Patient"}).json()["id"] for _ in range(4)]
    expected = [*reversed(after), before[0]]
    first = client.get("/fhir/_history", params={"_since": since, "_count": 2}).json()
    assert first["total"] == 5
    pages = [first]
    while "next" in _links(pages[-1]):
        pages.append(client.get(_links(pages[-1])["next"]).json())
    assert [e["resource"]["id"] for page in pages for e in page["entry"]] == expected
    last = client.get(_links(first)["last"]).json()
    assert [e["resource"]["id"] for e in last["entry"]] == [before[0]]
    back = client.get(_links(last)["previous"]).json()
    assert [e["resource"]["id"] for e in back["entry"]] == expected[2:4]
